"""Image folders: one subfolder per class (``data/cats/*.jpg``,
``data/dogs/*.jpg``), the one reader of that layout.

:func:`scan_image_folder` lists the classes (sorted names = label order) and
their image files (anywhere below the class folder, as
``keras.utils.image_dataset_from_directory`` finds them), decodes every file
once so that an unreadable one is reported by name and left out before any
training starts, and refuses folders a classifier cannot learn from, naming
the argument or recipe key. :meth:`FolderScan.examples` gives the readable
``(paths, labels)``, all of them or a seeded train / validation split.
"""

import dataclasses
import os
import warnings
from typing import List

import numpy as np

from igc_keras.errors import DataError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def class_image_files(class_dir):
    """Image files anywhere under ``class_dir`` (Tiny ImageNet keeps them in
    ``<class>/images/``), in the order keras' ``index_directory`` lists them."""
    found = []
    for root, _, files in sorted(os.walk(class_dir), key=lambda item: item[0]):
        found += [os.path.join(root, name) for name in sorted(files)
                  if name.lower().endswith(IMAGE_EXTENSIONS)]
    return found


@dataclasses.dataclass
class FolderScan:
    """What :func:`scan_image_folder` found in a folder of class subfolders.

    Attributes:
        directory: the folder.
        key: the argument / recipe key that named it (for messages).
        class_names: sorted subfolder names (the label order).
        files: class name -> its image files (readable or not).
        unreadable: paths of files that could not be read or decoded.
    """

    directory: str
    key: str
    class_names: List[str]
    files: dict
    unreadable: List[str]

    @property
    def counts(self):
        """Image files per class (unreadable ones included)."""
        return {name: len(self.files[name]) for name in self.class_names}

    @property
    def num_images(self):
        return sum(self.counts.values())

    def examples(self, split=None, fraction=0.0, seed=0):
        """``(paths, labels)`` of the readable images.

        Args:
            split: None (all), ``"train"`` or ``"validation"``: with
                ``fraction`` > 0, a seeded shuffle of all readable files is
                cut so that the last ``int(fraction x N)`` are the
                validation part (``keras.utils.image_dataset_from_directory``'s
                rule), the rest the training part.
        """
        bad = set(self.unreadable)
        paths, labels = [], []
        for index, name in enumerate(self.class_names):
            for path in self.files[name]:
                if path not in bad:
                    paths.append(path)
                    labels.append(index)
        if not fraction or split is None:
            return paths, labels
        held_out = int(fraction * len(paths))
        if held_out < 1 or held_out >= len(paths):
            raise DataError(
                f"a validation split of {fraction} of the {len(paths)} "
                f"readable images in {self.key}={self.directory!r} leaves "
                f"{'no validation' if held_out < 1 else 'no training'} image.")
        order = np.random.RandomState(seed).permutation(len(paths))
        order = order[-held_out:] if split == "validation" else \
            order[:-held_out]
        return [paths[i] for i in order], [labels[i] for i in order]

    def report(self):
        """Warns (``UserWarning``) with the count and the first names of the
        unreadable files that are skipped; nothing when there are none."""
        if not self.unreadable:
            return
        shown = ", ".join(self.unreadable[:5])
        more = (f" and {len(self.unreadable) - 5} more"
                if len(self.unreadable) > 5 else "")
        warnings.warn(
            f"{self.key}={self.directory!r}: skipping {len(self.unreadable)} "
            f"of {self.num_images} image file(s) that cannot be decoded: "
            f"{shown}{more}.", UserWarning, stacklevel=2)


def undecodable(paths):
    """The subset of ``paths`` that ``tf.io.decode_image`` cannot read (all
    decoded in parallel in one ``tf.data`` pass)."""
    if not paths:
        return []
    import tensorflow as tf

    def decode(index, path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                   expand_animations=False)
        return index, tf.shape(image)[0]

    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(paths), dtype=tf.int64), tf.constant(paths)))
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=False).ignore_errors().batch(1024)
    readable = set()
    for indices, _ in dataset.as_numpy_iterator():
        readable.update(int(i) for i in indices)
    return [path for i, path in enumerate(paths) if i not in readable]


def scan_image_folder(directory, key="directory", check_images=True):
    """Checks a folder of class subfolders before any training starts.

    Args:
        directory: folder with one subfolder per class.
        key: the argument or recipe key named in error messages.
        check_images: decode every image once to find unreadable files.

    Returns:
        :class:`FolderScan`.

    Raises:
        DataError (naming ``key``): the folder does not exist, has no class
        subfolders or only one, a class has no images, or a class has no
        readable image.
    """
    if directory is None or not os.path.isdir(directory):
        raise DataError(f"{key}={directory!r} is not an existing directory.")
    directory = os.fspath(directory)
    classes = sorted(name for name in os.listdir(directory)
                     if os.path.isdir(os.path.join(directory, name))
                     and not name.startswith("."))
    if not classes:
        raise DataError(
            f"{key}={directory!r} has no class subfolders; expected one "
            f"subfolder per class holding its images, e.g. "
            f"{os.path.join(directory, 'cats', '0001.jpg')} and "
            f"{os.path.join(directory, 'dogs', '0001.jpg')}.")
    if len(classes) < 2:
        raise DataError(
            f"{key}={directory!r} has only 1 class subfolder ({classes[0]!r}); "
            f"a classifier needs at least 2 classes.")
    files = {name: class_image_files(os.path.join(directory, name))
             for name in classes}
    empty = [name for name in classes if not files[name]]
    if empty:
        raise DataError(
            f"{key}={directory!r}: class subfolder(s) {empty} contain no "
            f"images (extensions {', '.join(IMAGE_EXTENSIONS)}); remove them "
            f"or add images.")
    unreadable = []
    if check_images:
        unreadable = undecodable([p for name in classes for p in files[name]])
        bad = set(unreadable)
        dead = [name for name in classes
                if all(path in bad for path in files[name])]
        if dead:
            raise DataError(
                f"{key}={directory!r}: no image of class subfolder(s) {dead} "
                f"can be decoded.")
    return FolderScan(directory, key, classes, files, unreadable)


def check_same_classes(train, validation):
    """Refuses a validation folder whose classes differ from training's."""
    if validation.class_names != train.class_names:
        raise DataError(
            f"{validation.key}={validation.directory!r} has class subfolders "
            f"{validation.class_names}; they must be the same as "
            f"{train.key}={train.directory!r}'s {train.class_names}.")

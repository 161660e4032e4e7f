"""The image files a COCO annotation file names, checked before any training.

:func:`check_coco_images` refuses, with a :class:`~igc_keras.errors.DataError`
naming the file and image id, a selected image that is not on disk or whose
pixel size is not the ``width`` x ``height`` of its image record (the boxes
are normalised by that size, so a wrong one would move every box). The size
comes from the file's header (:func:`image_file_size`: JPEG, PNG, GIF, BMP),
a few bytes per file, not from decoding it; the tf.data pipeline checks the
decoded size again for files whose header it cannot read.
"""

import os
import struct

from igc_keras.errors import DataError

#: JPEG start-of-frame markers (baseline, progressive, lossless,
#: arithmetic): the frame header holds the height and width.
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB,
                0xCD, 0xCE, 0xCF}


def _jpeg_size(handle):
    """Walks the JPEG markers (after start-of-image) to the first frame
    header."""
    while True:
        if handle.read(1) != b"\xff":
            return None
        marker = handle.read(1)
        while marker == b"\xff":  # fill bytes before a marker
            marker = handle.read(1)
        if not marker or marker[0] in (0xD9, 0xDA):  # end / scan: no frame
            return None
        if marker[0] == 0x01 or 0xD0 <= marker[0] <= 0xD8:
            continue  # markers without a length
        length_bytes = handle.read(2)
        if len(length_bytes) < 2:
            return None
        if marker[0] in _JPEG_FRAMES:
            frame = handle.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return height, width
        handle.seek(struct.unpack(">H", length_bytes)[0] - 2, os.SEEK_CUR)


def image_file_size(path):
    """``(height, width)`` of a JPEG, PNG, GIF or BMP file read from its
    header; None for another format or a header that cannot be read."""
    with open(path, "rb") as handle:
        head = handle.read(26)
        if head[:2] == b"\xff\xd8":
            handle.seek(2)
            return _jpeg_size(handle)
        if (head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and
                len(head) >= 24):
            width, height = struct.unpack(">II", head[16:24])
            return height, width
        if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
            width, height = struct.unpack("<HH", head[6:10])
            return height, width
        if head[:2] == b"BM" and len(head) >= 26:
            width, height = struct.unpack("<ii", head[18:26])
            return abs(height), width
    return None


def check_coco_images(annotations, image_dir, records):
    """Refuses (``DataError``) ``records`` of ``annotations`` (a
    :class:`~igc_keras.detection.coco.CocoAnnotations`) whose file is not in
    ``image_dir`` or whose header size is not the record's; the message
    names the first few, their image ids and both sizes."""
    def first_few(items, separator):
        return separator.join(items[:3]) + (" ..." if len(items) > 3 else "")

    missing, mismatched = [], []
    for record in records:
        path = os.path.join(image_dir, record.file_name)
        if not os.path.isfile(path):
            missing.append(f"{path!r} (image id {record.image_id})")
            continue
        size = image_file_size(path)
        if size is not None and size != (record.height, record.width):
            mismatched.append(
                f"image id {record.image_id} ({record.file_name!r}) is "
                f"{size[1]}x{size[0]} (width x height) but its record says "
                f"{record.width}x{record.height}")
    if missing:
        raise DataError(
            f"{annotations.path}: {len(missing)} of the {len(records)} "
            f"selected images are not in {image_dir!r}: "
            f"{first_few(missing, ', ')}.")
    if mismatched:
        raise DataError(
            f"{annotations.path}: {len(mismatched)} of the {len(records)} "
            f"selected images have another size than their record's "
            f"'width'/'height' (boxes are normalised by those): "
            f"{first_few(mismatched, '; ')}. Fix the image records or the "
            f"files.")

from setuptools import find_packages, setup

DEPLOY = ["onnxruntime>=1.20", "openvino>=2025.0", "nncf>=2.14",
          "tf2onnx>=1.16", "onnx>=1.16"]
HUB = ["keras-hub>=0.32"]
# the other Keras backends, CPU builds: the tests run the models on each
# (torch 2.13.0 is the CPU build pip finds on this project's machines; PyPI's
# plain "torch" is a CUDA build of several GB)
BACKENDS = ["jax[cpu]>=0.4.30", "torch==2.13.0"]

setup(
    name="igc_keras",
    version="0.1.0",
    description="Interleaved Group Convolution networks (IGCV1, IGCV2, IGCV3) "
                "for Keras 3 / TensorFlow",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["igc_keras", "igc_keras.*"]),
    # the igc-keras command's options and console: beside the package, so
    # that --help answers without importing Keras / TensorFlow
    py_modules=["igc_keras_cli"],
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.0",
        "keras>=3.8,<4",
        "numpy",
        "pyyaml>=6",
        "filelock",  # one download of a checkpoint when processes race
        "tensorflow-datasets>=4.9",
        "tensorboard",  # the training logs (TF 2.21 no longer pulls it in)
        "scikit-learn",  # the quickstart's bundled digits dataset
        "pycocotools",  # COCO detection evaluation
        "opencv-python-headless",  # keras.visualization box drawing (detect)
        # QAT / pruning (igc_keras.optimize): tfmot runs on tf_keras (Keras 2)
        # only; both are imported lazily, never with the package
        "tensorflow-model-optimization==0.8.*",
        "tf_keras==2.21.*",
    ],
    extras_require={
        # igc_keras.optimize.export(format="onnx" / "openvino"); imported
        # only when asked for
        "deploy": DEPLOY,
        # igc_keras.hub: the backbones, classifiers and presets in KerasHub
        "hub": HUB,
        # xdist: the suite runs on 2 workers (`addopts` in pytest.ini); the
        # deploy runtimes, KerasHub and the JAX / PyTorch backends so that
        # their tests run
        "test": ["pytest>=8", "pytest-timeout", "pytest-xdist"] + DEPLOY
                + HUB + BACKENDS,
    },
    entry_points={"console_scripts": ["igc-keras=igc_keras_cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)

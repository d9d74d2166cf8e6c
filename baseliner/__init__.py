"""baseliner: build org-level conda baselines into locks, images, tarballs and a shared cache."""

__version__ = "0.1.0"

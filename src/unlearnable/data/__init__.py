"""Datasets: layouts read into checked rows, manifests, splits, the image store, generated datasets."""

"""The data owner's room: protect a folder for publishing, and check what a scraper would learn from it.

It composes the method's stages (data, protect, defend, clip) for one folder, as the workflow composes them
for a grid. Kept empty so `python -m unlearnable.owner.lean` imports nothing heavy.
"""

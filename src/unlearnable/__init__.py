"""Multimodal unlearnable examples (MEM) for CLIP-style image-caption datasets.

The library's public face, flat as open_clip's: protect a folder, check what a scraper would learn from it,
and read what a protection made. Names load on first use, so `import unlearnable` stays light (the
workflow imports it at parse time).
"""

__version__ = "0.1.0"


class UnlearnableError(Exception):
    """A user-facing error: its message is one line naming the key, file or row at fault."""


class ConfigError(UnlearnableError):
    pass


class DataError(UnlearnableError):
    pass


_API = {
    "protect_folder": "unlearnable.owner.protect_folder",  # a folder of captioned images -> published + private
    "OwnerResult": "unlearnable.owner.protect_folder",
    "verify_folder": ("unlearnable.owner.verify", "verify"),  # train a victim on clean and on published; compare
    "format_drop": "unlearnable.owner.verify",
    "owner_settings": "unlearnable.owner.defaults",  # the owner's command's defaults, chosen on real photos
    "OWNER_MODEL": "unlearnable.owner.defaults",
    "ProtectConfig": "unlearnable.protect.config",
    "method_config": "unlearnable.protect.config",   # a method by kind, with its defaults and overrides
    "METHOD_KINDS": "unlearnable.protect.kinds",     # every protection kind by name, with its defaults
    "MethodKind": "unlearnable.protect.kinds",
    "register_method": ("unlearnable.protect.kinds", "register"),  # a new kind: one registration
    "ModelSpec": "unlearnable.clip.models",
    "TrainConfig": "unlearnable.clip.train",
    "LayoutConfig": "unlearnable.data.sources",
    "Defence": "unlearnable.defend.defences",        # what a scraper does before training (Defence.parse)
    "ProtectionDir": "unlearnable.data.folders",     # the folders the stages hand each other
    "PublishedDir": "unlearnable.data.folders",
    "DefendedDir": "unlearnable.data.folders",
}
__all__ = ["UnlearnableError", "ConfigError", "DataError", "__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'unlearnable' has no attribute {name!r}")
    import importlib

    module, attr = _API[name] if isinstance(_API[name], tuple) else (_API[name], name)
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))

"""A sibling package of the toy apps: it reaches containers only through ``add_local_python_source``."""


def shout(text: str) -> str:
    return f"{text.upper()}!"

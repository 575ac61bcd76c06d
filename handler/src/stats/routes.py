"""README.md's route rule, as handler/counter.py applies it (tests/unit/
test_route_rule_property.py keeps the two texts identical), and the routes a query names."""

import re

from .settings import HttpError

MAX_PATH_BYTES = 1024
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
PATH_BYTES = bytes(UNRESERVED) + b"!$&'()*+,;=:@/"  # what a path holds unescaped
NOT_NORMAL = re.compile(r"%([0-9A-Fa-f]{2})|[^A-Za-z0-9\-._~!$&'()*+,;=:@/]")


def normal_escape(match):
    # An escape as RFC 3986 6.2.2 normalises it, or a character as RFC 3987 3.1 maps it
    if match[1]:
        byte = int(match[1], 16)
        return chr(byte) if byte in UNRESERVED else "%" + match[1].upper()
    return "".join(f"%{byte:02X}" for byte in match[0].encode())


def segments_of(path):
    """The path's segments, empty ones folded and dot segments removed as RFC 3986 5.2.4
    does: "." is dropped, ".." drops the segment before it (none above the root)."""
    kept = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    return kept


def route_of(path):
    """(route, None) or (None, (status, error)): README.md's route rule."""
    if not isinstance(path, str):
        return None, (400, "not an API Gateway proxy event: 'path' must be a string")
    try:
        odd = path.encode().translate(None, PATH_BYTES)  # C speed: usually empty
    except UnicodeEncodeError:
        return None, (400, "path is not valid UTF-8")
    if odd:
        if CONTROL_CHARACTERS.search(path):
            return None, (400, "path contains control characters")
        path = NOT_NORMAL.sub(normal_escape, path)
    if not (
        path.startswith("/")
        and "//" not in path
        and "/." not in path  # C speed: every dot segment but a leading one starts so
        and (path == "/" or path[-1] != "/")
    ):
        path = "/" + "/".join(segments_of(path))
    if len(path) > MAX_PATH_BYTES:  # ASCII by now
        message = f"the route is {len(path)} bytes; at most {MAX_PATH_BYTES} are counted"
        return None, (414, message)
    return path, None


# A route RouteTemplates names (/users/{id}, /files/{path+}) or a route of its own
# (/{overflow}, /{unmatched}): braces a real path never keeps (route_of escapes them), so such
# a name is looked up as it is written.
NAMED_ROUTE = re.compile(
    r"(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-F]{2})+|/\{[A-Za-z0-9._~-]+\+?\})+"
)


def routed(path, what):
    if "{" in path and NAMED_ROUTE.fullmatch(path):
        return path
    route, problem = route_of(path)
    if problem:
        raise HttpError(400, f"invalid {what}: {problem[1]}")
    return route

# What the configured indexes hold for a list of requirement lines, asked in one process through
# pip's own finder (the indexes, find-links, certificates and proxies pip itself would use), and
# what the environment already has installed. Run by the environment's own interpreter inside
# the build sandbox, before anything of the request is installed; studio-runner reads the last
# line of its output (see pin-probe.ts). Nothing here installs anything.
#
#   python pip-probe.py index     [FILE]   -> what the indexes offer per line
#   python pip-probe.py installed [FILE]   -> what is installed per line, and every distribution
#
# FILE (or stdin) holds {"requirements": [lines...]}.
#
# Works with the pip bundled with Python 3.8 to 3.13 (pip 20.1 and later).

import json
import logging
import sys

SENTINEL = "STUDIO_RUNNER_PIP_PROBE "


def emit(result):
    sys.stdout.write("\n" + SENTINEL + json.dumps(result) + "\n")
    sys.stdout.flush()


def installed_distributions():
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8
        return {}
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out[canonical(name)] = dist.version
    return out


def canonical(name):
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def parse(line, Requirement):
    # Hashes (--hash=...) may follow a pin; the finder needs only the requirement.
    text = line.split(" --hash", 1)[0].strip()
    return Requirement(text)


def nearest(wanted, versions, Version):
    """The available version closest to `wanted`: the same major version first, then the
    smallest difference, component by component; a tie goes to the newer one."""
    try:
        want = Version(wanted)
    except Exception:
        return None
    if not versions:
        return None

    def release(v, n):
        r = list(v.release) + [0] * n
        return r[:n]

    width = max([len(want.release)] + [len(v.release) for v in versions])
    w = release(want, width)

    def key(v):
        r = release(v, width)
        return (0 if r[0] == w[0] else 1, [abs(a - b) for a, b in zip(r, w)], 0 if v > want else 1)

    return str(min(versions, key=key))


def probe_index(lines):
    from pip._internal.commands import create_command
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version

    installed = installed_distributions()
    command = create_command("install")
    options, _ = command.parse_args([])
    out = []
    with command.main_context():
        session = command.get_default_session(options)
        finder = command._build_package_finder(options=options, session=session)
        for line in lines:
            entry = {"line": line}
            out.append(entry)
            try:
                req = parse(line, Requirement)
            except Exception as err:
                entry.update(status="invalid", why=str(err))
                continue
            entry["name"] = canonical(req.name)
            if req.marker is not None and not req.marker.evaluate():
                entry.update(status="skip", why="its environment marker (%s) is false for this interpreter and platform" % req.marker)
                continue
            have = installed.get(canonical(req.name))
            if have is not None and req.specifier.contains(have, prereleases=True) and not req.extras:
                entry.update(status="present", installed=have)
                continue
            try:
                candidates = finder.find_all_candidates(req.name)
            except Exception as err:
                entry.update(status="error", why="%s: %s" % (type(err).__name__, err))
                continue
            usable = [c for c in candidates if not getattr(c.link, "is_yanked", False)]
            versions = sorted({c.version for c in usable})
            entry["versions"] = [str(v) for v in versions]
            if any(req.specifier.contains(v, prereleases=True) for v in versions):
                entry["status"] = "exact"
                continue
            if not versions:
                entry.update(status="absent")
                continue
            entry["status"] = "other"
            pre = any(Version(s.version).is_prerelease for s in req.specifier if hasattr(s, "version") and s.version and not s.version.endswith("*"))
            final = [v for v in versions if pre or not v.is_prerelease] or versions
            pinned = [s.version for s in req.specifier if s.operator in ("==", "===") and not s.version.endswith(".*")]
            entry["nearest"] = nearest(pinned[0], final, Version) if pinned else str(max(final))
    return out


def probe_installed(lines):
    from pip._vendor.packaging.requirements import Requirement

    installed = installed_distributions()
    out = []
    for line in lines:
        entry = {"line": line}
        out.append(entry)
        try:
            req = parse(line, Requirement)
        except Exception as err:
            entry.update(why=str(err))
            continue
        entry["name"] = canonical(req.name)
        have = installed.get(canonical(req.name))
        if have is not None:
            entry["installed"] = have
            entry["satisfied"] = bool(req.specifier.contains(have, prereleases=True))
    return out, installed


def main():
    # pip's own warnings (an unreadable find-links entry, a retried index) are not ours to print.
    logging.disable(logging.WARNING)
    mode = sys.argv[1] if len(sys.argv) > 1 else "index"
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            lines = json.load(f)["requirements"]
    else:
        lines = json.loads(sys.stdin.read())["requirements"]
    import platform

    result = {"python": platform.python_version()}
    try:
        import pip

        result["pip"] = pip.__version__
    except Exception:
        result["pip"] = None
    try:
        if mode == "installed":
            pins, everything = probe_installed(lines)
            result.update(pins=pins, distributions=everything)
        else:
            result["pins"] = probe_index(lines)
    except Exception as err:
        result["error"] = "%s: %s" % (type(err).__name__, err)
    emit(result)


if __name__ == "__main__":
    main()

"""Build the Redis or RabbitMQ image for the testcontainers path from this machine's Debian packages.

Images cannot be pulled here (no registry is reachable), but the packages the local path runs
are installed: their files, and those of every package they depend on, make a root filesystem
that ``docker import`` turns into an image, tagged as ``asgi_conformance.servers`` asks for.
Usage: ``python3 ci/debian_rootfs.py redis|rabbitmq [--force]`` (DOCKER_HOST names the engine;
ci/docker-engine.sh sets it). Skips the build when the tag exists, unless ``--force``.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass

# What a container needs besides the server's own dependencies: a shell and the tools the
# servers' start scripts call (RabbitMQ's are shell scripts).
ESSENTIALS = ("dash", "bash", "coreutils", "sed", "grep", "mawk", "findutils", "hostname", "base-files")
# Files no server reads: left out to keep the image (and its build) small.
SKIPPED_PREFIXES = ("/usr/share/doc/", "/usr/share/man/", "/usr/share/locale/", "/usr/share/info/",
                    "/usr/share/lintian/", "/usr/share/bug/")
# The merged-/usr links of Debian 12: files listed under /lib are stored under /usr/lib.
MERGED_LINKS = ("bin", "sbin", "lib", "lib64")
LABEL = "org.asgi-conformance.built-from=debian-packages"


@dataclass(frozen=True)
class Image:
    tag: str
    packages: tuple[str, ...]
    changes: tuple[str, ...]  # docker import --change lines: CMD, ENV


IMAGES = {
    # The tags asgi_conformance/servers/{redis,rabbitmq}.py run; an official image of that tag
    # works as well, as every container is given its full command.
    "redis": Image("redis:7", ("redis-server",), (
        'CMD ["redis-server", "--save", "", "--appendonly", "no"]',
    )),
    "rabbitmq": Image("rabbitmq:3", ("rabbitmq-server",), (
        "ENV PATH=/usr/lib/rabbitmq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["rabbitmq-server"]',
    )),
}


def installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package], capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.endswith(" installed")


def dependencies(package: str) -> list[str]:
    """The installed packages ``package`` depends on (for an alternative, the first installed)."""
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Pre-Depends}, ${Depends}", package],
                          capture_output=True, text=True, check=True)
    found = []
    for alternatives in done.stdout.split(","):
        for choice in alternatives.split("|"):
            name = re.sub(r"\(.*?\)", "", choice).strip().split(":")[0]
            if name and installed(name):
                found.append(name)
                break
    return found


def closure(roots: tuple[str, ...]) -> set[str]:
    missing = [package for package in roots if not installed(package)]
    if missing:
        raise SystemExit(f"ci/debian_rootfs: {' '.join(missing)} not installed: run ci/install-servers.sh")
    seen: set[str] = set()
    todo = list(roots) + [package for package in ESSENTIALS if installed(package)]
    while todo:
        package = todo.pop()
        if package not in seen:
            seen.add(package)
            todo.extend(dependencies(package))
    return seen


def files_of(packages: set[str]) -> dict[str, str]:
    """Path in the image -> path on this machine, for every file and symlink the packages list."""
    listed = subprocess.run(["dpkg-query", "-L", *sorted(packages)], capture_output=True, text=True).stdout
    files: dict[str, str] = {}
    for path in listed.splitlines():
        path = path.strip()
        if not path.startswith("/") or path.startswith(SKIPPED_PREFIXES):
            continue
        if os.path.islink(path) or os.path.isfile(path):
            inside = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
            files.setdefault(inside.lstrip("/"), path)
    return files


def _directory(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info


def _text(name: str, text: str) -> tuple[tarfile.TarInfo, io.BytesIO]:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    return info, io.BytesIO(data)


def write_rootfs(files: dict[str, str], out: io.BufferedIOBase) -> None:
    """A tar stream of the root filesystem: the files, their directories, the merged-/usr links,
    the few files a package's maintainer script would have made (users, groups), a /tmp."""
    with tarfile.open(fileobj=out, mode="w|") as tar:
        directories = {"tmp", "root", "var/tmp", "var/lib", "var/log", "etc"}
        for name in files:
            parent = os.path.dirname(name)
            while parent:
                directories.add(parent)
                parent = os.path.dirname(parent)
        for name in sorted(directories):
            tar.addfile(_directory(name, 0o1777 if name in ("tmp", "var/tmp") else 0o755))
        for link in MERGED_LINKS:  # usrmerge lists them; a machine without it has real dirs
            if os.path.islink(f"/{link}") and link not in directories and link not in files:
                info = tarfile.TarInfo(link)
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(f"/{link}")
                tar.addfile(info)
        for info_file in (_text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n"),
                          _text("etc/group", "root:x:0:\nnogroup:x:65534:\n")):
            if info_file[0].name.lstrip("/") not in files:
                tar.addfile(*info_file)
        for name, source in sorted(files.items()):
            info = tar.gettarinfo(source, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isreg():
                with open(source, "rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)


def tag_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def build(image: Image) -> None:
    files = files_of(closure(image.packages))
    command = ["docker", "import"]
    for change in (*image.changes, f"LABEL {LABEL}"):
        command += ["--change", change]
    importer = subprocess.Popen([*command, "-", image.tag], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    assert importer.stdin is not None and importer.stderr is not None
    try:
        write_rootfs(files, importer.stdin)  # type: ignore[arg-type]  # a pipe is a binary stream
        importer.stdin.close()
    except BrokenPipeError:
        pass  # docker import gave up: its error says why
    errors = importer.stderr.read()
    importer.wait()
    if importer.returncode != 0:
        raise SystemExit(f"ci/debian_rootfs: docker import of {image.tag} failed: "
                         f"{errors.decode(errors='replace').strip()[-300:]}")
    # A rebuild (--force) leaves the image it replaced untagged: remove ours, nobody else's.
    subprocess.run(["docker", "image", "prune", "--force", "--filter", f"label={LABEL.split('=')[0]}"],
                   capture_output=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", choices=sorted(IMAGES))
    parser.add_argument("--force", action="store_true", help="build even when the tag exists")
    args = parser.parse_args(argv)
    image = IMAGES[args.image]
    if not args.force and tag_exists(image.tag):
        print(f"ci/debian_rootfs: {image.tag} already built")
        return 0
    started = time.monotonic()
    build(image)
    print(f"ci/debian_rootfs: built {image.tag} from Debian packages in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The QA benchmark's library: real manuals in English and Chinese, fetched from Debian.

Four packages, downloaded with `apt-get download` and unpacked with `dpkg -x` into a
work folder (never committed), then a fixed selection of their HTML files ingested into
one library, as a bilingual user would keep them:

- `python3.11-doc`: the Python tutorial (16 pages);
- `postgresql-doc-15`: the PostgreSQL tutorial (24 pages);
- `debian-handbook`: twelve sections of the Debian Administrator's Handbook, in en-US and
  in zh-CN (the same sections: one topic in two languages, as in a real library);
- `maint-guide-zh-cn`: the Debian New Maintainers' Guide in Chinese (every chapter).

A question's evidence names a file by its key: `<package>/<path inside the doc folder>`.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path

HANDBOOK_SECTIONS = (
    "apt.html",
    "sect.apt-get.html",
    "sect.creating-accounts.html",
    "sect.regular-upgrades.html",
    "sect.common-procedures.html",
    "sect.hostname-name-service.html",
    "sect.syslog.html",
    "sect.network-config.html",
    "sect.user-group-databases.html",
    "sect.backup.html",
    "sect.remote-login.html",
    "sect.quotas.html",
)


@dataclass(frozen=True)
class CorpusPart:
    package: str
    folder: str  # the package's folder under usr/share/doc
    patterns: tuple[str, ...]  # globs inside `folder`

    def files(self, root: Path) -> list[Path]:
        base = root / "usr/share/doc" / self.folder
        found = {path for pattern in self.patterns for path in base.glob(pattern)}
        return sorted(found)

    def key(self, root: Path, path: Path) -> str:
        return f"{self.package}/{path.relative_to(root / 'usr/share/doc' / self.folder)}"


PARTS = (
    CorpusPart("python3.11-doc", "python3.11/html", ("tutorial/*.html",)),
    CorpusPart("postgresql-doc-15", "postgresql-doc-15/html", ("tutorial*.html",)),
    CorpusPart(
        "debian-handbook",
        "debian-handbook/html",
        tuple(f"{lang}/{name}" for lang in ("en-US", "zh-CN") for name in HANDBOOK_SECTIONS),
    ),
    CorpusPart("maint-guide-zh-cn", "maint-guide-zh-cn/html", ("*.zh-cn.html",)),
)


def fetch(workdir: Path) -> Path:
    """Download and unpack every package under `workdir` (once); returns the unpacked root."""
    root = workdir / "root"
    marker = root / ".complete"
    if marker.exists():
        return root
    workdir.mkdir(parents=True, exist_ok=True)
    packages = [part.package for part in PARTS]
    download = ["apt-get", "download", *packages]
    if subprocess.run(download, cwd=workdir, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(download, cwd=workdir, check=True, capture_output=True)
    for package in packages:
        deb = next(workdir.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    marker.touch()
    return root


def corpus_files(root: Path) -> dict[str, Path]:
    """Every file of the library by its evidence key, e.g. 'python3.11-doc/tutorial/venv.html'."""
    return {part.key(root, path): path for part in PARTS for path in part.files(root)}

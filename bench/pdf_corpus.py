"""The Debian reference PDF as a benchmark corpus, and questions that cluster on its passages.

The PDF (261 pages) comes from the Debian package `debian-reference-en`, fetched with
`apt-get download` by `bench.ingest_speed.fetch_pdf` into a temporary folder; nothing
is kept unless an index folder is given. Two sets of question groups, each group
about one section of the PDF:

- `REWORDED`: four rewordings of one question (case, "can I", "in Debian"), as many
  users asking the same thing would type it; most of a group retrieves the same
  passages (`serve_load` reports how many).
- `PARAPHRASED`: four different questions about the same section; they retrieve
  overlapping passage sets, rarely the same one.
"""

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.ingest_speed import fetch_pdf
from indexer import Index

PACKAGE = "debian-reference-en"
WARM_UP_QUESTION = "What is the Debian Free Software Guidelines?"  # passages no group retrieves

REWORDED: dict[str, list[str]] = {
    "apt-sources": [
        "How do I configure the APT sources list?",
        "How do I configure the APT sources list in Debian?",
        "how do I configure the apt sources list",
        "How can I configure the APT sources list?",
    ],
    "ssh-keys": [
        "How do I set up SSH public key authentication?",
        "How do I set up public key authentication for SSH?",
        "how to set up ssh public key authentication",
        "How can I set up SSH public key authentication?",
    ],
    "sudo": [
        "How do I configure sudo for a user?",
        "How do I configure sudo for a user in Debian?",
        "how do i configure sudo for a user",
        "How can I configure sudo for a user?",
    ],
    "fstab": [
        "What is the format of /etc/fstab?",
        "What is the format of the /etc/fstab file?",
        "what is the format of /etc/fstab",
        "Explain the format of /etc/fstab.",
    ],
    "locale": [
        "How do I configure the locale settings in Debian?",
        "How do I configure locale settings on Debian?",
        "how do I configure the locale settings",
        "How can I configure the locale settings in Debian?",
    ],
    "git-config": [
        "How do I configure git user name and email?",
        "How do I configure my git user name and email?",
        "how to configure git user name and email",
        "How can I set the git user name and email?",
    ],
    "backup": [
        "Which tools can back up and restore a system?",
        "Which tools can I use to back up and restore a system?",
        "which tools can back up and restore a system",
        "What tools can back up and restore a system?",
    ],
    "journal": [
        "How do I view log messages of a systemd service?",
        "How do I view the log messages of a systemd service?",
        "how to view log messages of a systemd service",
        "How can I view log messages of a systemd service?",
    ],
}

PARAPHRASED: dict[str, list[str]] = {
    "apt-sources": [
        "What goes into /etc/apt/sources.list?",
        "How do I add a Debian archive to the sources.list file?",
        "Explain the format of the sources.list lines for APT.",
        "Which Debian archive areas can I list for APT?",
    ],
    "ssh-keys": [
        "How do I log in to a remote host with SSH without a password?",
        "Where are the SSH authorized keys stored?",
        "How do I create an SSH key pair for remote login?",
        "How do I copy my SSH key to a server?",
    ],
    "sudo": [
        "What is sudo and how do I give a user root privileges with it?",
        "How do I edit the sudoers file?",
        "How can a normal user run commands as root with sudo?",
        "Is it safer to use sudo than to log in as root?",
    ],
    "fstab": [
        "How do I mount a filesystem automatically at boot with /etc/fstab?",
        "How do I add a partition to fstab?",
        "Which options can I use in fstab mount entries?",
        "How do I refer to a disk by UUID when mounting it?",
    ],
    "locale": [
        "How do I change the system locale?",
        "What does the LANG environment variable do?",
        "How do I generate a new locale?",
        "How do I use a UTF-8 locale?",
    ],
    "git-config": [
        "How do I start using Git for version control?",
        "What are the basic git commands?",
        "How do I clone a git repository?",
        "How do I commit my changes with git?",
    ],
    "backup": [
        "How do I back up my data with rsync?",
        "What backup tools does Debian offer?",
        "How do I make a backup of my home directory?",
        "How often should I back up my system?",
    ],
    "journal": [
        "How do I read the system logs with journalctl?",
        "Where does systemd store the journal?",
        "How do I look at the kernel messages in the journal?",
        "How do I follow the log of a service as it runs?",
    ],
}


@dataclass(frozen=True)
class IngestedPdf:
    data_dir: Path  # the index folder holding the PDF
    pdf_name: str
    pages: int  # 0 when the index already held the PDF (then nothing was ingested)
    chunks: int
    ingest_s: float


@contextmanager
def ingested_pdf(index_dir: Path | None = None, package: str = PACKAGE) -> Iterator[IngestedPdf]:
    """The PDF ingested into `index_dir` (reused if it already holds it) or a temporary one."""
    with tempfile.TemporaryDirectory(prefix="pdf-bench-") as workdir:
        pdf = fetch_pdf(package, Path(workdir))
        data_dir = index_dir or Path(workdir) / "data"
        started = time.perf_counter()
        with Index(data_dir) as index:
            report = index.ingest_files(pdf)
        yield IngestedPdf(
            data_dir, pdf.name, report.pages, report.chunks, time.perf_counter() - started
        )

"""The docs and their pictures stay in step: every image a doc names exists, and every image in
docs/img is shown or named by a doc (a superseded picture is deleted, not left behind)."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "img"
IMAGE = re.compile(r"[\w./-]*?([\w.-]+\.(?:png|jpe?g|svg|gif))")


def docs() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def named_images() -> dict[str, list[str]]:
    """image file name -> the docs that name it (as a link target or in the text)."""
    named = {}
    for doc in docs():
        for match in IMAGE.finditer(doc.read_text()):
            if "img/" in match.group(0):
                named.setdefault(match.group(1), []).append(doc.name)
    return named


def test_every_image_a_doc_names_exists():
    missing = {name: where for name, where in named_images().items()
               if not (IMAGES / name).is_file()}
    assert not missing, f"named by the docs but not in docs/img: {missing}"


def test_every_image_in_docs_img_is_named_by_a_doc():
    named = named_images()
    orphans = sorted(p.name for p in IMAGES.iterdir() if p.name not in named)
    assert not orphans, f"in docs/img but named by no doc (delete them): {orphans}"
    assert len(named) > 5  # the walk found the docs' pictures

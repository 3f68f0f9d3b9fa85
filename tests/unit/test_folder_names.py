"""Folder names as people write them into the server's spelling (RFC 3501 §5.1.3)."""

from __future__ import annotations

import pytest

from email_service.errors import ValidationError
from email_service.services.folders.names import FolderName, folder_name
from email_service.store.models import Folder


def test_a_path_nests_by_the_delimiter_and_is_modified_utf7() -> None:
    assert folder_name("Projekte/Entwürfe", "/") == FolderName(
        "Projekte/Entwürfe", "Projekte/Entw&APw-rfe"
    )
    assert folder_name("a&b.c", ".") == FolderName("a&b.c", "a&-b.c")
    assert folder_name("日本語", None) == FolderName("日本語", "&ZeVnLIqe-")


def test_inside_a_parent_one_level_and_the_parents_raw_name() -> None:
    parent = Folder(name="Büro", raw_name="B&APw-ro", delimiter="/")
    assert folder_name("2026 ✓", "/", parent) == FolderName("Büro/2026 ✓", "B&APw-ro/2026 &JxM-")
    with pytest.raises(ValidationError, match="delimiter"):
        folder_name("a/b", "/", parent)
    with pytest.raises(ValidationError, match="hierarchy"):
        folder_name("a", None, parent)


@pytest.mark.parametrize("name", ["a//b", "/a", "a/", " ", "a*", "50%", "x" * 201, "a/" * 17])
def test_refused_names(name: str) -> None:
    with pytest.raises(ValidationError):
        folder_name(name, "/")


def test_a_flat_server_keeps_the_slash_in_the_name() -> None:
    assert folder_name("a/b", None) == FolderName("a/b", "a/b")

"""Attachment: MIME from content, size cap, sha256, JSON-safe form, honest refusals."""

from __future__ import annotations

import base64
import hashlib

import pytest

from providers import Attachment, InvalidRequestError, UnsupportedAttachmentError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
GIF = b"GIF89a" + b"\x00" * 16
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8


@pytest.mark.parametrize("data,mime", [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"),
                                       (WEBP, "image/webp"), ("héllo\n".encode(), "text/plain")])
def test_mime_is_sniffed_from_content(data, mime):
    att = Attachment.from_bytes(data)
    assert att.mime == mime
    assert att.sha256 == hashlib.sha256(data).hexdigest()
    assert att.size == len(data)


def test_from_path_ignores_the_name_and_reads_the_content(tmp_path):
    p = tmp_path / "photo"
    p.write_bytes(PNG)
    att = Attachment.from_path(p)
    assert (att.name, att.mime, att.data) == ("photo", "image/png", PNG)


def test_extension_that_lies_about_the_content_is_refused(tmp_path):
    p = tmp_path / "photo.jpg"
    p.write_bytes(PNG)
    with pytest.raises(UnsupportedAttachmentError, match="extension says image/jpeg but the content is image/png"):
        Attachment.from_path(p)


def test_declared_mime_that_contradicts_the_content_is_refused():
    with pytest.raises(UnsupportedAttachmentError, match="declared image/gif but its content is image/png"):
        Attachment.from_bytes(PNG, "image/gif")


def test_unsupported_binary_is_refused_naming_the_supported_types():
    with pytest.raises(UnsupportedAttachmentError, match="supported: image/png"):
        Attachment.from_bytes(b"%PDF-1.7\x00\x01\x02", name="doc.pdf")


def test_size_cap_is_enforced_before_reading(tmp_path):
    p = tmp_path / "big.txt"
    p.write_bytes(b"a" * 2048)
    with pytest.raises(UnsupportedAttachmentError, match="over the 1024 bytes cap"):
        Attachment.from_path(p, max_bytes=1024)
    assert Attachment.from_path(p, max_bytes=4096).size == 2048


def test_default_cap_is_20_mib():
    from providers import DEFAULT_MAX_BYTES

    assert DEFAULT_MAX_BYTES == 20 * 1024 * 1024
    with pytest.raises(UnsupportedAttachmentError, match="20.0 MiB cap"):
        Attachment.from_bytes(b"a" * (DEFAULT_MAX_BYTES + 1))


def test_missing_file_and_directory_are_clear_errors(tmp_path):
    with pytest.raises(UnsupportedAttachmentError, match="no such file"):
        Attachment.from_path(tmp_path / "nope.png")
    with pytest.raises(UnsupportedAttachmentError, match="is a directory"):
        Attachment.from_path(tmp_path)


def test_attachment_errors_are_invalid_requests_and_value_errors():
    with pytest.raises(InvalidRequestError):
        Attachment.from_bytes(b"\x00\x01binary")
    with pytest.raises(ValueError):
        Attachment.from_bytes(b"\x00\x01binary")


def test_data_url_and_json_round_trip():
    att = Attachment.from_bytes(PNG, name="p.png")
    assert att.data_url() == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert Attachment.from_dict(att.to_dict()) == att


def test_from_dict_revalidates_content():
    bad = {"name": "x.png", "mime": "image/png", "data_b64": base64.b64encode(b"not an image \x00").decode()}
    with pytest.raises(UnsupportedAttachmentError):
        Attachment.from_dict(bad)
    with pytest.raises(UnsupportedAttachmentError, match="base64"):
        Attachment.from_dict({"name": "x", "data_b64": "!!!"})


def test_symlink_out_of_the_working_tree_is_refused_when_a_root_is_given(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("do not send me")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link.txt").symlink_to(secret)
    (tree / "real.txt").write_text("fine")
    (tree / "inner.txt").symlink_to(tree / "real.txt")
    with pytest.raises(UnsupportedAttachmentError, match="symlink to .*outside the working tree"):
        Attachment.from_path(tree / "link.txt", root=tree)
    assert Attachment.from_path(tree / "inner.txt", root=tree).text == "fine"  # links inside the tree are fine
    assert Attachment.from_path(secret, root=tree).text == "do not send me"  # a real path, named explicitly

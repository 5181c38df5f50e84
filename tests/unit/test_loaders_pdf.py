from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader, PdfWriter

from docent.types import UnreadableDocument
from ingest.loaders import load_document


def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page ("" makes a blank page)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode() if text else b""
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            f" /Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    if title:
        objects.append(f"<< /Title ({title}) >>".encode())
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    info = f" /Info {len(objects)} 0 R" if title else ""
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_one_section_per_page_with_text():
    document = load_document(
        "papers/manual.pdf", make_pdf(["Ray runs tasks", "", "Actors keep state"], title="Ray Manual")
    )
    assert document.title == "Ray Manual"
    assert [(s.title, s.anchor, s.text) for s in document.sections] == [
        ("Ray Manual — page 1", "page=1", "Ray runs tasks"),
        ("Ray Manual — page 3", "page=3", "Actors keep state"),
    ]


def test_without_a_metadata_title_the_stem_is_used():
    document = load_document("papers/manual.pdf", make_pdf(["Hello"]))
    assert document.title == "manual" and document.sections[0].title == "manual — page 1"


def test_no_text_at_all_is_a_scanned_pdf():
    with pytest.raises(UnreadableDocument, match=r"no extractable text \(scanned PDF\?\)"):
        load_document("scan.pdf", make_pdf(["", ""]))


def encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_a_pdf_that_needs_a_password_is_unreadable():
    with pytest.raises(UnreadableDocument, match="encrypted PDF"):
        load_document("locked.pdf", encrypted(make_pdf(["secret"]), user_password="password"))


def test_a_pdf_encrypted_with_an_empty_password_opens_like_in_a_viewer():
    document = load_document("restricted.pdf", encrypted(make_pdf(["Open to read"]), user_password=""))
    assert [s.text for s in document.sections] == ["Open to read"]


@pytest.mark.parametrize(
    "data",
    [b"", b"%PDF-1.4\nthis is not a pdf body", make_pdf(["Truncated"])[:150], b"PK\x03\x04 a zip file"],
)
def test_malformed_pdf_is_unreadable(data):
    with pytest.raises(UnreadableDocument, match="PDF"):
        load_document("broken.pdf", data)


VALID = make_pdf(["Some text", "More text"], title="Fuzz")


@settings(max_examples=150, deadline=None)
@given(at=st.integers(0, len(VALID) - 1), patch=st.binary(min_size=1, max_size=16), cut=st.booleans())
def test_damaged_pdfs_never_raise_anything_but_unreadable(at, patch, cut):
    data = VALID[:at] + patch if cut else VALID[:at] + patch + VALID[at + len(patch) :]
    try:
        document = load_document("fuzz.pdf", data)
    except UnreadableDocument as exc:
        assert exc.reason
    else:
        assert all(s.text for s in document.sections)

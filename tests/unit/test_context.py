from hypothesis import given
from hypothesis import strategies as st

from docent.sections import SectionPiece, around, join_pieces, merge_overlapping
from ingest.splitter import RecursiveSplitter


def test_merging_by_shared_text_keeps_each_overlap_once():
    assert merge_overlapping(["the quick brown", "brown fox jumps", "jumps over"]) == "the quick brown fox jumps over"
    assert merge_overlapping(["no shared", "text here"]) == "no shared\ntext here"
    assert merge_overlapping([]) == ""


@given(st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta"]), min_size=30, max_size=120))
def test_joining_a_sections_chunks_by_offset_gives_back_its_text(words):
    text = " ".join(words)  # repetitive on purpose: shared text alone would be ambiguous here
    pieces = [SectionPiece(text[s:e], s) for s, e in RecursiveSplitter(chunk_size=40, chunk_overlap=12).split_spans(text)]
    assert join_pieces(pieces).split() == text.split()


def test_pieces_without_offsets_are_joined_by_shared_text():
    assert join_pieces([SectionPiece("the quick brown", None), SectionPiece("brown fox", None)]) == "the quick brown fox"


def test_around_grows_alternately_and_keeps_the_center():
    pieces = [SectionPiece(letter * 10, 10 * n) for n, letter in enumerate("abcde")]
    assert around(pieces, 2, budget=30) == pieces[1:4]
    assert around(pieces, 0, budget=25) == pieces[0:2]
    assert around(pieces, 4, budget=5) == pieces[4:5]  # the hit itself, even over budget
    assert around(pieces, 2, budget=1000) == pieces

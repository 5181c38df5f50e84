"""Follow-up questions made to stand alone without an LLM.

"How do I create an actor?" then "and how do I kill it?": asked alone, the follow-up
retrieves nothing about actors. A follow-up that refers back (a pronoun, "what about…",
a leading "and", or too few words of its own to search by) is searched together with the
subject of the conversation: the question it follows, as that one was searched for. The
gateway searches such a question both ways and takes the hits in turn
(`services/gateway/pipeline.py`), so one that named its own subject after all keeps its
own hits. A question that stands on its own is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from docent.types import Role, Turn

# Words that point back at something said before. A question that also names its own subject
# ("How do I use ray.get so that it times out?") is searched both ways, so these may overreach.
REFERRING = frozenset({
    "it", "its", "it's", "itself", "they", "them", "their", "theirs", "themselves", "this", "these", "those", "that",
})
# Words that point back only at the end of a short question ("and on GPUs too?", "what about the other one?").
_REFERRING_LAST = frozenset({"there", "one", "ones", "too", "instead"})
# Openings that continue the previous question rather than ask a new one.
_CONTINUING = ("and", "but", "also", "so", "or", "plus", "what about", "how about", "same")
# Words that carry no subject: question words, auxiliaries, pronouns, fillers.
_FUNCTION_WORDS = frozenset(["a", "an", "the", "and", "or", "but", "so", "to", "of", "in", "on", "at", "by", "for", "from", "with", "without", "into", "onto", "about", "as", "is", "are", "was", "were", "be", "been", "being", "do", "does", "did", "done", "doing", "can", "could", "should", "would", "will", "shall", "may", "might", "must", "have", "has", "had", "having", "i", "me", "my", "we", "our", "you", "your", "he", "she", "him", "her", "it", "its", "they", "them", "their", "this", "that", "these", "those", "there", "here", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "if", "then", "than", "else", "also", "just", "only", "not", "no", "yes", "any", "some", "all", "each", "every", "more", "most", "other", "another", "same", "such", "very", "too", "please", "thanks", "thank", "okay", "ok", "hi", "hey", "get", "got", "use", "using", "used", "way", "ways", "need", "want", "like", "make", "sure", "possible", "instead"])
_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.'-]*")
# A name the question gives its subject by: a capitalised word after the first, or code (`x`, a_b, a.b, f()).
NAMED_SUBJECT = re.compile(r"(?<!^)(?<![.?!] )\b[A-Z][A-Za-z0-9]+|`[^`]+`|\b\w+[_.]\w+|\w+\(\)")
# A question ending in "too", "one"… with more words of its own than this names its own subject.
MAX_OWN_WORDS_REFERRING = 4
# A follow-up with fewer words of its own than this, and no name, gives no subject to search by ("why?").
MIN_OWN_WORDS = 2


def words(text: str) -> list[str]:
    return [w.lower().strip(".'-") for w in _WORD.findall(text)]


def own_words(text: str) -> list[str]:
    """The words that carry a subject: not question words, pronouns or fillers."""
    return [w for w in words(text) if w and w not in _FUNCTION_WORDS]


def refers_back(question: str) -> bool:
    """The question leans on what was said before it."""
    said = words(question)
    lowered = " ".join(said)
    if any(lowered == opening or lowered.startswith(opening + " ") for opening in _CONTINUING):
        return True
    if any(w in REFERRING for w in said):
        return True
    own = len(own_words(question))
    if own <= MAX_OWN_WORDS_REFERRING and said and said[-1] in _REFERRING_LAST:
        return True
    return own < MIN_OWN_WORDS and not NAMED_SUBJECT.search(question)


_ABOUT = " (about: "


def subject_of(turns: Sequence[Turn]) -> str:
    """What the conversation is about: its last question (as it was searched for)."""
    return next((t.content for t in reversed(turns) if t.role == Role.USER), "")


def condense_offline(question: str, turns: Sequence[Turn]) -> str:
    """The follow-up with the conversation's subject, when it refers back; else the question unchanged.

    A chain of follow-ups keeps two questions at most, the last and the one the chain began
    with: "why? (about: and what happens then?; What does job_timeout do?)".
    """
    subject = subject_of(turns)
    if not subject or not refers_back(question):
        return question
    last, _, about = subject.partition(_ABOUT)
    if about:
        began = about.removesuffix(")").split("; ")[-1]
        subject = f"{last}; {began}"
    return f"{question}{_ABOUT}{subject})"

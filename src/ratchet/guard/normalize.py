"""Undo the cheap disguises of an injection before the rules look: one canonical form of a text.

:func:`normalize` applies, in order: Unicode NFKC (full-width and styled letters such as
``ｉｇｎｏｒｅ`` or ``𝐢𝐠𝐧𝐨𝐫𝐞`` become plain ones), removal of invisible format characters (zero-width
spaces and joiners, the BOM, soft hyphens, bidirectional controls), case folding, Latin
look-alikes for Cyrillic and Greek letters inside words that also hold Latin letters (``іgnоrе``
with Cyrillic і, о, е; words written wholly in Cyrillic or Greek are left alone, so Russian or
Greek text stays Russian or Greek), digits read as letters inside words that hold letters
(``1gn0r3``; not a name ending in a number such as ``base64``), letters spelled out one by one
joined (``i g n o r e``, ``i.g.n.o.r.e``), and every run of blanks made one space (line breaks
are kept, one per run: some rules look at line starts).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize"]

# Invisible characters that split a word for a regex but not for a reader (or a model).
_INVISIBLE = dict.fromkeys(
    [0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064,
     0x3164, 0xFEFF, 0xFFA0, *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2066, 0x206A),
     *range(0xFE00, 0xFE10)]
)

# Cyrillic and Greek letters that look like Latin ones (after case folding).
_LOOKALIKES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "з": "3", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m",
    "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "ɡ": "g", "ɩ": "i", "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ϲ": "c", "ϳ": "j",
})
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_LATIN = re.compile(r"[a-z]")
_FOREIGN = re.compile(r"[\u0370-\u03ff\u0400-\u052f\u0250-\u02af]")
_NAME_NUMBER = re.compile(r"[a-z]+\d+")
_LEET_WORD = re.compile(r"(?<![\w@$!])(?=[\w@$!]*[a-z])[\w@$!]*[0134579@$][\w@$!]*")
# Five or more single letters with the same separator between them (space, dot, dash, underscore, star…).
_SPELLED = re.compile(r"(?<![^\W_])[^\W\d_]([ .\-_*/|+])(?:[^\W\d_]\1){3,}[^\W\d_](?![^\W_])")
_BLANKS = re.compile(r"[^\S\n]+")
_LINES = re.compile(r" ?\n[\s]*")


def _unmask_lookalikes(match: re.Match[str]) -> str:
    word = match.group(0)
    if _FOREIGN.search(word) and _LATIN.search(word):
        return word.translate(_LOOKALIKES)
    return word


def _unleet(match: re.Match[str]) -> str:
    word = match.group(0)
    if "@" in word[1:] and match.string[match.end():match.end() + 1] == ".":
        return word  # an e-mail address, not a disguise
    if _NAME_NUMBER.fullmatch(word):
        return word  # base64, rot13, utf8, mp3: a name ending in a number
    return word.translate(_LEET)


def _join_spelled(match: re.Match[str]) -> str:
    return match.group(0).replace(match.group(1), "")


def normalize(text: str) -> str:
    """The canonical form rules match against (see the module's description)."""
    if text.isascii():  # NFKC, invisible characters and look-alikes concern other characters only
        text = text.lower()
    else:
        text = _WORD.sub(_unmask_lookalikes, unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold())
    text = _LEET_WORD.sub(_unleet, text)
    text = _SPELLED.sub(_join_spelled, _BLANKS.sub(" ", text))
    return _LINES.sub("\n", text).strip()

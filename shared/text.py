"""Vietnamese text utilities shared by ingest, publisher and workers.

Vietnamese text reaches us from many sources (editors typing in different input
methods, copy-paste from Word or web pages, wire feeds) and the same word can
arrive as different code point sequences. These helpers give every service the
same answer to three questions:

* what is the clean form of a field we store (``clean_text``, ``too_long``),
* when are two spellings "the same word" (``canonical``, ``fold``,
  ``search_text``),
* what URL slug does a title get (``slugify``, ``slug_with_suffix``).

Everything here is pure standard library and deterministic, so the same input
gives the same output in every process and on every deploy.
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = [
    "FALLBACK_SLUG",
    "canonical",
    "clean_text",
    "fold",
    "nfc",
    "search_text",
    "slug_with_suffix",
    "slugify",
    "too_long",
]

# Slug used when a title has nothing left after folding ("bài viết" = article).
FALLBACK_SLUG = "bai-viet"

# The five Vietnamese tone marks as combining characters (grave, acute, hook
# above, tilde, dot below). Every other combining mark on a Vietnamese vowel is
# a vowel modifier (breve, circumflex, horn) and is part of the letter itself.
_TONE_MARKS = frozenset("\u0300\u0301\u0309\u0303\u0323")

# Two-vowel endings where the two spelling habits disagree on the tone position:
# old style "hòa, khỏe, thủy", new style "hoà, khoẻ, thuỷ". They only disagree
# when the syllable ends with the pair; with a final consonant ("hoàn",
# "thuyền") there is only one correct position.
_HABIT_DIPHTHONGS = frozenset({("o", "a"), ("o", "e"), ("u", "y")})

_VOWELS = frozenset("aeiouy")

# A word for ``canonical``: letters plus any combining marks, so a stray
# decomposed mark stays inside its word instead of splitting it.
_WORD_RE = re.compile(r"(?:[^\W\d_]|[\u0300-\u036f])+")

# Code points that are always removed by ``clean_text``: zero-width characters
# and bidi controls (invisible, break search matching and can be used to
# disguise text), the BOM, soft hyphen and word joiner.
_INVISIBLE = frozenset(
    [chr(c) for c in range(0x200B, 0x2010)]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\ufeff", "\u00ad", "\u2060"]
)

# Line-break characters other than "\n" that are normalized to "\n" in
# multi-line text (and to a space in single-line text).
_LINE_BREAKS = frozenset("\r\x85\u2028\u2029")

# Latin letters that do not decompose under NFD but have an obvious plain ASCII
# reading. "Ð" (U+00D0, eth) is here because it looks exactly like "Đ" and is
# sometimes typed in its place.
_FOLD_LETTERS = str.maketrans(
    {
        "đ": "d",
        "ð": "d",
        "ø": "o",
        "ł": "l",
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
    }
)

_NON_SLUG_RE = re.compile(r"[^a-z0-9]+")


def nfc(s: str) -> str:
    """Return ``s`` in Unicode NFC.

    Vietnamese letters can be typed precomposed ("ệ") or as a base letter with
    combining marks; NFC picks the precomposed form so equal-looking strings
    compare equal and lengths count letters rather than marks.
    """
    return unicodedata.normalize("NFC", s)


def _is_noncharacter(cp: int) -> bool:
    # U+FDD0..U+FDEF and the last two code points of every plane are permanently
    # reserved as noncharacters; they never belong in interchanged text.
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


# Every Unicode space separator (category Zs) other than the plain space.
_SPACES = "\u00a0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u202f\u205f\u3000"


def _clean_table(multiline: bool) -> dict[int, str | None]:
    """What clean_text does to each character, as one str.translate table (built once):
    a per-character Python loop cost milliseconds on every article body."""
    table: dict[int, str | None] = {}
    for cp in range(0x20):
        table[cp] = None  # C0 controls
    for cp in range(0x7F, 0xA0):
        table[cp] = None  # DEL and C1 controls
    for cp in range(0xD800, 0xE000):
        table[cp] = None  # lone surrogates (paired ones never exist in a str)
    for ch in _INVISIBLE:
        table[ord(ch)] = None
    for cp in [
        *range(0xFDD0, 0xFDF0),
        *(p * 0x10000 + e for p in range(17) for e in (0xFFFE, 0xFFFF)),
    ]:
        table[cp] = None  # noncharacters
    for ch in _SPACES:
        table[ord(ch)] = " "  # NBSP, narrow NBSP, em space, ideographic space...
    # Vertical tab and form feed separate words; keep them apart.
    table[0x0B] = table[0x0C] = " "
    for ch in _LINE_BREAKS:
        table[ord(ch)] = "\n" if multiline else " "
    table[ord("\n")] = "\n" if multiline else " "
    table[ord("\t")] = "\t" if multiline else " "
    return table


def _changed_by(table: dict[int, str | None]) -> re.Pattern[str]:
    """A character class of what `table` changes. Most text has none or few such characters,
    and finding them costs less than passing every character through str.translate (about
    40% of clean_text's time on an article body)."""
    codes = sorted(k for k, v in table.items() if v != chr(k))
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return re.compile(
        "["
        + "".join(
            re.escape(chr(a)) + ("" if a == b else "-" + re.escape(chr(b))) for a, b in ranges
        )
        + "]+"
    )


_CLEAN_SINGLE = _clean_table(multiline=False)
_CLEAN_MULTI = _clean_table(multiline=True)
_CHANGED_SINGLE = _changed_by(_CLEAN_SINGLE)
_CHANGED_MULTI = _changed_by(_CLEAN_MULTI)


def clean_text(s: str, *, multiline: bool = False) -> str:
    """Return a normalized, storable version of a user-supplied text field.

    Input comes from forms, feeds and copy-paste, and can carry invisible or
    invalid characters that break search, slugs, display or the database
    (PostgreSQL rejects NUL, and lone surrogates cannot be encoded as UTF-8).
    This removes control characters, lone surrogates, zero-width and bidi
    control characters and noncharacters, turns every Unicode space (including
    NBSP) into a plain space, collapses runs of spaces and strips the ends.

    With ``multiline=False`` (titles, names) tabs and line breaks become
    spaces. With ``multiline=True`` (summaries, bodies) tabs and newlines are
    kept, other line breaks ("\\r\\n", "\\r", U+2028, ...) become "\\n", and
    spaces are stripped at both ends of every line.

    The function never truncates or raises: length checks are a validation
    decision, made separately with ``too_long`` so the caller can report a
    field error instead of silently losing text.
    """
    if multiline:
        s = s.replace("\r\n", "\n")
        # Newlines and tabs are all a body has that str.isprintable refuses and the table keeps.
        clean = s.replace("\n", " ").replace("\t", " ").isprintable()
    else:
        if not s.isprintable():  # most often for its newlines and tabs, which become spaces
            s = s.replace("\n", " ").replace("\t", " ")
        clean = s.isprintable()
    if not clean:  # isprintable() is True for none of the characters the table changes
        table = _CLEAN_MULTI if multiline else _CLEAN_SINGLE
        s = (_CHANGED_MULTI if multiline else _CHANGED_SINGLE).sub(
            lambda found: found.group().translate(table), s
        )
    # NFC after filtering: removing an invisible character can bring a base
    # letter and a combining mark together.
    text = nfc(s)
    if "  " in text or text[:1] == " " or text[-1:] == " ":
        text = " ".join(filter(None, text.split(" ")))  # runs collapsed, ends stripped
    if not multiline:
        return text
    # Spaces at both ends of every line: after the runs are collapsed, at most one each side
    # of a newline, and the text's own ends go with the final strip().
    return text.replace(" \n", "\n").replace("\n ", "\n").strip()


def too_long(s: str, max_length: int) -> bool:
    """Tell whether ``s`` has more than ``max_length`` characters.

    Length is counted in NFC code points, which is what a user sees as letters
    and what PostgreSQL ``varchar(n)`` counts, so a decomposed "ệ" (three code
    points) counts as one. Pass text that went through ``clean_text`` first.
    """
    return len(nfc(s)) > max_length


def _split_letters(word: str) -> list[tuple[str, str, str]]:
    # Split an NFD word into (base, modifier marks, tone marks) per letter.
    letters: list[tuple[str, str, str]] = []
    for ch in word:
        if unicodedata.combining(ch) and letters:
            base, mods, tones = letters[-1]
            if ch in _TONE_MARKS:
                letters[-1] = (base, mods, tones + ch)
            else:
                letters[-1] = (base, mods + ch, tones)
        else:
            letters.append((ch, "", ""))
    return letters


def _canonical_word(match: re.Match[str]) -> str:
    word = match.group(0)
    letters = _split_letters(unicodedata.normalize("NFD", word))
    if len(letters) < 2:
        return word
    (b1, m1, t1), (b2, m2, t2) = letters[-2], letters[-1]
    # Only the plain pairs oa/oe/uy, old style: tone on the first vowel, none
    # on the second, no vowel modifiers (so "ươ", "uê" etc. are not touched).
    if (b1.lower(), b2.lower()) not in _HABIT_DIPHTHONGS or m1 or m2 or not t1 or t2:
        return word
    if len(letters) > 2:
        prev = letters[-3][0].lower()
        # After "q" the "u" is part of the consonant "qu", so in "quý" the
        # tone is already on the only real vowel; after another vowel this is
        # not the two-vowel ending we are looking for.
        if prev == "q" or prev in _VOWELS:
            return word
    letters[-2] = (b1, m1, "")
    letters[-1] = (b2, m2, t1)
    return "".join(b + m + t for b, m, t in letters)


def canonical(s: str) -> str:
    """Return ``s`` with one tone-placement habit, for matching Vietnamese words.

    Vietnamese has two accepted habits for the syllable-final pairs "oa", "oe"
    and "uy": the old style puts the tone on the first vowel ("hòa", "khỏe",
    "thủy", "Ủy ban") and the new style on the second ("hoà", "khoẻ", "thuỷ",
    "Uỷ ban"). Both are correct and both appear in our content, so exact
    comparisons need one form; this picks the new style. Syllables with a final
    consonant ("hoàn", "thuyền") have a single correct spelling and are left
    alone, as is "qu" + vowel ("quý"), where "qu" is a consonant.

    Case is preserved, input may be NFC or NFD, and the result is NFC. Nothing
    else about the text changes.
    """
    return nfc(_WORD_RE.sub(_canonical_word, nfc(s)))


@functools.lru_cache(maxsize=4096)
def _strip_marks_after(base: str) -> bool:
    # Diacritics are dropped only on Latin letters (and on stray marks with no
    # letter under them). Marks on other scripts (Thai vowels, Devanagari
    # matras, Greek accents...) are part of the spelling and are kept.
    if not base.isalpha():
        return True
    return unicodedata.name(base, "").startswith("LATIN ")


def fold(s: str) -> str:
    """Return ``s`` lowercased and without Vietnamese diacritics.

    Readers often search without accents ("vien kiem sat" for "Viện Kiểm
    Sát"), and slugs must be ASCII, so both go through this form. All
    diacritics on Latin letters are removed (which also makes tone placement
    irrelevant), "đ"/"Đ" becomes "d", and a few other non-decomposing Latin
    letters get their usual ASCII spelling. Characters of other scripts are
    kept, only lowercased. The result is NFC.

    Folding loses information ("mã", "má" and "ma" all become "ma"); use it for
    matching and slugs, never for display.
    """
    # Fast path: in NFC, every Vietnamese letter is one precomposed code point, folded by
    # one table lookup (C speed); anything still carrying a combining mark after that (a
    # decomposed sequence NFC could not compose) takes the general path.
    lowered = nfc(s).lower()
    text = lowered.translate(_fold_fast())
    if "\0" not in text and not text.encode("utf-8", "surrogatepass").translate(
        None, _BELOW_FAST_TO
    ):
        return text  # nothing left that is or carries a mark: the general path changes nothing
    # A character that may need the general path, or one the fast table does not hold (NUL
    # in `text`): asked one by one (rare in Vietnamese text).
    text = lowered.translate(_FOLD_TABLE)
    if text.isascii() or not any(map(_needs_general_fold, set(text) - _ASCII)):
        return text
    return _fold_marks(s)


@functools.lru_cache(maxsize=4096)
def _needs_general_fold(ch: str) -> bool:
    decomposition = unicodedata.decomposition(ch)  # canonical ones only: compatibility ones
    canonical = bool(decomposition) and not decomposition.startswith("<")  # NFD leaves alone
    return canonical or unicodedata.category(ch).startswith("M")


def _fold_marks(s: str) -> str:
    """The general fold: decompose, drop the marks of Latin letters, recompose."""
    decomposed = unicodedata.normalize("NFD", s.lower())
    out: list[str] = []
    base = ""
    for ch in decomposed:
        if unicodedata.category(ch).startswith("M"):
            if _strip_marks_after(base):
                continue
        else:
            base = ch
        out.append(ch)
    return nfc("".join(out).translate(_FOLD_LETTERS))


_ASCII = frozenset(chr(c) for c in range(128))
# Every precomposed Latin letter (Latin-1 Supplement to Latin Extended-B, and Latin Extended
# Additional, where Vietnamese lives), mapped to what the general fold makes of it.
_FOLD_TABLE = {
    cp: folded
    for cp in (*range(0xC0, 0x250), *range(0x1E00, 0x1F00))
    if (folded := _fold_marks(chr(cp).lower())) != chr(cp).lower() or chr(cp) != chr(cp).lower()
}


# _FOLD_TABLE as a list with every other code point below U+3000 (Vietnamese text, its
# punctuation and symbols) present, as itself: str.translate pays for each character a dict
# lacks with a raised and caught KeyError, which cost more than half of fold()'s time on an
# article body. A character that needs the general path, or whose folded form has one,
# becomes NUL (as NUL itself does), which sends the text to the careful path; so does any
# character from U+3000 on, found in the UTF-8 form by a lead byte from 0xE3 on.
_FOLD_FAST_TO = 0x3000
_BELOW_FAST_TO = bytes(range(0xE3))  # every byte of the UTF-8 form of U+0000..U+2FFF


@functools.cache
def _fold_fast() -> list[int | str]:
    """Built on first use (tens of milliseconds), not by every process that imports this."""
    table: list[int | str] = [_FOLD_TABLE.get(cp, cp) for cp in range(_FOLD_FAST_TO)]
    table[0] = 0
    decomposition, category = unicodedata.decomposition, unicodedata.category
    for cp in range(0x80, _FOLD_FAST_TO):
        folded = table[cp]
        for ch in chr(folded) if isinstance(folded, int) else folded:
            if ch >= "\x80" and (
                decomposition(ch)[:1] not in ("", "<") or category(ch)[0] == "M"
            ):  # what _needs_general_fold says
                table[cp] = 0
    return table


def _truncate_slug(slug: str, max_length: int) -> str:
    # Cut a slug to max_length, preferring a "-" boundary so no word is cut in
    # half; a single word longer than max_length is cut hard.
    if len(slug) <= max_length:
        return slug
    if slug[max_length] == "-":
        return slug[:max_length].rstrip("-")
    head = slug[:max_length]
    cut = head.rfind("-")
    if cut > 0:
        head = head[:cut]
    return head.rstrip("-")


def slugify(s: str, *, max_length: int = 80) -> str:
    """Return a lowercase ASCII URL slug for a title.

    The title is folded ("Đồng chí" -> "dong chi"), every run of characters
    outside ``[a-z0-9]`` becomes one "-", and the ends are stripped. Long slugs
    are cut at ``max_length`` on a word boundary so URLs stay readable. A title
    with nothing usable left (empty, only punctuation or non-Latin script) gets
    ``FALLBACK_SLUG``. The same title always gives the same slug; making it
    unique is the database's job (see ``slug_with_suffix``).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    slug = _NON_SLUG_RE.sub("-", fold(s)).strip("-")
    slug = _truncate_slug(slug, max_length)
    return slug or _truncate_slug(FALLBACK_SLUG, max_length)


def slug_with_suffix(slug: str, n: int, *, max_length: int = 80) -> str:
    """Return ``f"{slug}-{n}"``, trimming ``slug`` so the result fits max_length.

    Used when a slug is already taken: the caller tries increasing ``n`` until
    the database accepts one. The base is trimmed on a word boundary where
    possible, so the suffix is never cut off and the result never ends up
    longer than the column allows.
    """
    if n < 1:
        raise ValueError(f"suffix number must be positive, got {n}")
    suffix = f"-{n}"
    room = max_length - len(suffix)
    if room < 1:
        raise ValueError(f"max_length {max_length} leaves no room for suffix {suffix!r}")
    base = _truncate_slug(slug.strip("-"), room) or _truncate_slug(FALLBACK_SLUG, room)
    return base + suffix


def search_text(*parts: str) -> str:
    """Return the text to index (or to query with) for accent-free search.

    The parts (title, summary, body, ...) are joined with spaces, cleaned and
    folded, so "uỷ viên", "ủy viên", "Uỷ Viên" and "uy vien" all become
    "uy vien". ``fold`` drops every tone mark, so the tone-placement habits
    that ``canonical`` unifies cannot make a difference here. Index and query
    must both go through this function for the forms to match.
    """
    return fold(clean_text(" ".join(parts)))

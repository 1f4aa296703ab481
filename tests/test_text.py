"""Tests for shared.text: Vietnamese normalization, folding, slugs and search text."""

from __future__ import annotations

import itertools
import re
import unicodedata

import pytest

from shared.text import (
    FALLBACK_SLUG,
    canonical,
    clean_text,
    fold,
    nfc,
    search_text,
    slug_with_suffix,
    slugify,
    too_long,
)

# Combining characters used to build every vowel/tone combination by hand, so
# the NFD inputs do not depend on the code under test.
GRAVE, ACUTE, HOOK, TILDE, DOT = "\u0300", "\u0301", "\u0309", "\u0303", "\u0323"
BREVE, CIRCUMFLEX, HORN = "\u0306", "\u0302", "\u031b"

TONES = ["", GRAVE, ACUTE, HOOK, TILDE, DOT]
TONE_NAMES = ["none", "grave", "acute", "hook", "tilde", "dot"]

# vowel -> (ASCII base, modifier, ASCII name for test ids)
VOWELS = {
    "a": ("a", "", "a"),
    "ă": ("a", BREVE, "a_breve"),
    "â": ("a", CIRCUMFLEX, "a_circumflex"),
    "e": ("e", "", "e"),
    "ê": ("e", CIRCUMFLEX, "e_circumflex"),
    "i": ("i", "", "i"),
    "o": ("o", "", "o"),
    "ô": ("o", CIRCUMFLEX, "o_circumflex"),
    "ơ": ("o", HORN, "o_horn"),
    "u": ("u", "", "u"),
    "ư": ("u", HORN, "u_horn"),
    "y": ("y", "", "y"),
}

# The precomposed table written out literally (tones in TONES order), to check
# that the generated combinations really are the Vietnamese letters.
VOWEL_TABLE = {
    "a": "aàáảãạ",
    "ă": "ăằắẳẵặ",
    "â": "âầấẩẫậ",
    "e": "eèéẻẽẹ",
    "ê": "êềếểễệ",
    "i": "iìíỉĩị",
    "o": "oòóỏõọ",
    "ô": "ôồốổỗộ",
    "ơ": "ơờớởỡợ",
    "u": "uùúủũụ",
    "ư": "ưừứửữự",
    "y": "yỳýỷỹỵ",
}


def _combos() -> list[tuple[str, str, str, str]]:
    """(id, typed, expected precomposed letter, expected folded letter).

    "typed" is base + vowel modifier + tone, the order an input method emits;
    for dot below that is not the canonical NFD order, which is useful input.
    """
    cases = []
    for (vowel, (base, modifier, name)), upper in itertools.product(VOWELS.items(), [False, True]):
        for tone, tone_name, letter in zip(TONES, TONE_NAMES, VOWEL_TABLE[vowel], strict=True):
            b = base.upper() if upper else base
            expected = letter.upper() if upper else letter
            case_id = f"{name}-{tone_name}-{'upper' if upper else 'lower'}"
            cases.append((case_id, b + modifier + tone, expected, base))
    return cases


COMBOS = _combos()
COMBO_IDS = [c[0] for c in COMBOS]
TYPED_AND_LETTER = [(c[1], c[2]) for c in COMBOS]
TYPED_AND_FOLDED = [(c[1], c[3]) for c in COMBOS]
# NFC, canonical NFD, and the raw typed sequence (not normalized at all).
FORMS = ["NFC", "NFD", "typed"]


def _as(form: str, text: str) -> str:
    return text if form == "typed" else unicodedata.normalize(form, text)


def test_combination_count() -> None:
    # 12 vowels x 6 tones x 2 cases.
    assert len(COMBOS) == 144


@pytest.mark.parametrize(("typed", "letter"), TYPED_AND_LETTER, ids=COMBO_IDS)
def test_generated_letters_match_table(typed: str, letter: str) -> None:
    assert len(letter) == 1
    assert nfc(typed) == letter
    assert unicodedata.normalize("NFD", letter) == unicodedata.normalize("NFD", typed)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("typed", "folded"), TYPED_AND_FOLDED, ids=COMBO_IDS)
def test_fold_every_vowel_and_tone(form: str, typed: str, folded: str) -> None:
    text = _as(form, typed)
    assert fold(text) == folded
    # Inside a word too, with a consonant on each side.
    assert fold("Th" + text + "n") == "th" + folded + "n"


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("typed", "letter"), TYPED_AND_LETTER, ids=COMBO_IDS)
def test_canonical_every_vowel_and_tone(form: str, typed: str, letter: str) -> None:
    text = _as(form, typed)
    # A single vowel has only one place for the tone: canonical only composes.
    assert canonical(text) == letter
    assert canonical("ng" + text + "n") == "ng" + letter + "n"
    assert canonical("NG" + text + "N") == "NG" + letter + "N"


# Old style (tone on the first vowel) and new style (on the second) for every
# tone on the three syllable-final pairs.
DIPHTHONGS = [("o", "a", "h"), ("o", "e", "kh"), ("u", "y", "th")]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("tone", TONES[1:], ids=TONE_NAMES[1:])
@pytest.mark.parametrize(("v1", "v2", "onset"), DIPHTHONGS, ids=["oa", "oe", "uy"])
@pytest.mark.parametrize("case", ["lower", "upper", "title"])
def test_canonical_moves_tone_to_second_vowel(
    form: str, tone: str, v1: str, v2: str, onset: str, case: str
) -> None:
    old = onset + v1 + tone + v2
    new = onset + v1 + v2 + tone
    if case == "upper":
        old, new = old.upper(), new.upper()
    elif case == "title":
        old, new = old.capitalize(), new.capitalize()
    expected = nfc(new)
    assert nfc(old) != expected
    assert canonical(_as(form, old)) == expected
    assert canonical(_as(form, new)) == expected
    # Without a consonant before the pair as well ("òa" -> "oà").
    assert canonical(_as(form, v1 + tone + v2)) == nfc(v1 + v2 + tone)
    # With a final consonant there is one right place; nothing moves ("hoàn").
    for final in ("n", "N"):
        assert canonical(_as(form, old + final)) == nfc(old + final)
        assert canonical(_as(form, new + final)) == nfc(new + final)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Ủy ban", "Uỷ ban"),
        ("ỦY BAN", "UỶ BAN"),
        ("hòa", "hoà"),
        ("thủy", "thuỷ"),
        ("khỏe", "khoẻ"),
        ("Thúy", "Thuý"),
        ("họa sĩ", "hoạ sĩ"),
    ],
)
def test_tone_habits_equal_under_canonical(old: str, new: str) -> None:
    assert old != new
    assert canonical(old) == canonical(new) == new
    assert canonical(unicodedata.normalize("NFD", old)) == new


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Ủy ban", "Úy ban"),
        ("hòa", "hóa"),
        ("hòa", "hoàn"),
        ("thủy", "thùy"),
        ("thủy", "thuyền"),
        ("khỏe", "khóe"),
        ("Uỷ ban", "Uy ban"),
    ],
)
def test_canonical_keeps_different_words_apart(a: str, b: str) -> None:
    assert canonical(a) != canonical(b)


@pytest.mark.parametrize(
    "word",
    [
        "hoàn",
        "thuyền",
        "quý",
        "quá",
        "giữa",
        "Nguyễn",
        "ngoài",
        "khuỷu",
        "QUÝ",
        "HOÀN",
        "Zoë",
        "hello",
        "",
    ],
)
def test_canonical_leaves_single_spellings_alone(word: str) -> None:
    assert canonical(word) == word
    assert canonical(unicodedata.normalize("NFD", word)) == word


def test_canonical_does_not_treat_qu_as_a_diphthong() -> None:
    # "qu" is a consonant, so "uy" after it is not the oa/oe/uy pair: "qúy" is
    # a misspelling, not the other habit, and canonical does not rewrite it.
    assert canonical("qúy") == "qúy"
    assert canonical("QÙY") == "QÙY"
    assert canonical("qúy") != canonical("quý")
    # But a plain "u" + "y" after another consonant is moved.
    assert canonical("tùy") == "tuỳ"


def test_canonical_keeps_everything_else() -> None:
    text = "Ủy ban nhân dân tỉnh Khánh Hòa, năm 2021: sức khỏe  tốt!\n"
    assert canonical(text) == "Uỷ ban nhân dân tỉnh Khánh Hoà, năm 2021: sức khoẻ  tốt!\n"


def test_canonical_output_is_nfc() -> None:
    out = canonical(unicodedata.normalize("NFD", "Thủy điện Hòa Bình"))
    assert out == "Thuỷ điện Hoà Bình"
    assert unicodedata.is_normalized("NFC", out)


def test_fold_sentence() -> None:
    assert fold("Viện kiểm sát nhân dân tỉnh Thái Bình") == "vien kiem sat nhan dan tinh thai binh"
    assert fold("Viện Kiểm Sát") == "vien kiem sat"
    assert fold(unicodedata.normalize("NFD", "Viện Kiểm Sát")) == "vien kiem sat"


def test_fold_d_with_stroke() -> None:
    assert fold("Đồng đội") == "dong doi"
    assert fold("ĐẢNG") == "dang"
    # Eth looks exactly like Đ and is sometimes typed instead.
    assert fold("Ðà Nẵng") == "da nang"


def test_fold_both_tone_habits_equal() -> None:
    assert fold("Ủy ban") == fold("Uỷ ban") == "uy ban"
    assert fold("hòa") == fold("hoà") == "hoa"


def test_fold_keeps_other_scripts() -> None:
    assert fold("Привет МИР") == "привет мир"
    thai = "ภาษาไทย"
    assert fold(thai) == thai
    assert fold("Ά") == "ά"
    assert fold("北京 Hà Nội") == "北京 ha noi"


def test_fold_output_is_nfc() -> None:
    assert unicodedata.is_normalized("NFC", fold("ᾼ Ắ"))


LONG_TITLE = (
    "Viện kiểm sát nhân dân tỉnh Thái Bình tổng kết công tác năm 2021 "
    "và triển khai công tác năm 2022"
)
LONG_SLUG_FULL = (
    "vien-kiem-sat-nhan-dan-tinh-thai-binh-tong-ket-cong-tac-nam-2021-"
    "va-trien-khai-cong-tac-nam-2022"
)


def test_slugify_long_title_cut_on_word_boundary() -> None:
    assert slugify(LONG_TITLE, max_length=200) == LONG_SLUG_FULL
    slug = slugify(LONG_TITLE)
    assert slug == "vien-kiem-sat-nhan-dan-tinh-thai-binh-tong-ket-cong-tac-nam-2021-va-trien-khai"
    assert len(slug) <= 80
    assert LONG_SLUG_FULL.startswith(slug + "-")


def test_slugify_cut_exactly_at_boundary() -> None:
    # "aaaa-bbbb" cut at 4 keeps the whole first word and no trailing "-".
    assert slugify("aaaa bbbb", max_length=4) == "aaaa"
    assert slugify("aaaa bbbb", max_length=5) == "aaaa"
    assert slugify("aaaa bbbb", max_length=8) == "aaaa"
    assert slugify("aaaa bbbb", max_length=9) == "aaaa-bbbb"


def test_slugify_single_long_word_is_cut_hard() -> None:
    assert slugify("a" * 100) == "a" * 80


def test_slugify_examples() -> None:
    assert slugify("Đồng chí") == "dong-chi"
    assert slugify("  --Hà Nội: 36 phố phường!!  ") == "ha-noi-36-pho-phuong"
    assert slugify("Ủy ban") == slugify("Uỷ ban") == "uy-ban"
    assert slugify("COVID-19 & vắc-xin") == "covid-19-vac-xin"
    assert slugify(unicodedata.normalize("NFD", "Đồng chí")) == "dong-chi"


@pytest.mark.parametrize("title", ["", "   ", "!!!", "—", "北京", "\u200b\u00a0"])
def test_slugify_empty_falls_back(title: str) -> None:
    assert slugify(title) == "bai-viet" == FALLBACK_SLUG


def test_slugify_is_stable_and_ascii() -> None:
    first = slugify(LONG_TITLE)
    assert all(slugify(LONG_TITLE) == first for _ in range(3))
    assert first.isascii()


def test_slugify_rejects_bad_max_length() -> None:
    with pytest.raises(ValueError, match="max_length"):
        slugify("abc", max_length=0)


def test_slug_with_suffix() -> None:
    assert slug_with_suffix("dong-chi", 2) == "dong-chi-2"
    long_slug = slugify(LONG_TITLE)
    with_suffix = slug_with_suffix(long_slug, 12)
    assert with_suffix == (
        "vien-kiem-sat-nhan-dan-tinh-thai-binh-tong-ket-cong-tac-nam-2021-va-trien-12"
    )
    assert len(with_suffix) <= 80
    assert slug_with_suffix("a" * 80, 3) == "a" * 78 + "-3"
    assert len(slug_with_suffix("abc-def", 10, max_length=6)) <= 6
    assert slug_with_suffix("abc-def", 10, max_length=6) == "abc-10"
    assert slug_with_suffix("", 2) == "bai-viet-2"


def test_slug_with_suffix_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        slug_with_suffix("abc", 0)
    with pytest.raises(ValueError):
        slug_with_suffix("abc", 123, max_length=4)


def test_clean_text_controls_and_invisibles() -> None:
    dirty = "\ufeff Tin\x00 nóng\x07:\u200b Hà\u00a0\u00a0Nội\u202e\x9f\ud800 \ufffe\U0010ffff "
    assert clean_text(dirty) == "Tin nóng: Hà Nội"


def test_clean_text_lone_surrogate() -> None:
    assert clean_text("a\ud800b\udfffc") == "abc"
    assert clean_text("\ud800") == ""


@pytest.mark.parametrize(
    "ch", ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202e", "\u2066", "\u2069"]
)
def test_clean_text_zero_width_and_bidi(ch: str) -> None:
    assert clean_text(f"Hà{ch}Nội") == "HàNội"


def test_clean_text_spaces() -> None:
    assert clean_text("  Hà\u00a0Nội  \u3000 mùa   thu \u202f ") == "Hà Nội mùa thu"


def test_clean_text_single_line_turns_breaks_into_spaces() -> None:
    assert clean_text("dòng một\ndòng\thai\r\nba\u2028bốn") == "dòng một dòng hai ba bốn"


def test_clean_text_multiline() -> None:
    text = "  Đoạn  một \r\n\tthụt lề\rdòng ba\u2028\x00dòng bốn  \n\n"
    assert clean_text(text, multiline=True) == "Đoạn một\n\tthụt lề\ndòng ba\ndòng bốn"


def test_clean_text_composes_to_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "Việt Nam")
    assert clean_text(nfd) == "Việt Nam"
    # A zero-width space between a letter and its mark is removed, then composed.
    assert clean_text("e\u200b\u0302\u0323") == "ệ"


def test_clean_text_keeps_normal_text() -> None:
    text = "Ủy ban nhân dân TP. Hồ Chí Minh: 100% đạt chuẩn (năm 2022) — “tốt”."
    assert clean_text(text) == text


def test_too_long() -> None:
    assert not too_long("Việt", 4)
    assert too_long("Việt Nam", 4)
    # Decomposed letters count once.
    assert not too_long(unicodedata.normalize("NFD", "Việt"), 4)
    assert not too_long("", 0)


def test_search_text_unifies_spellings() -> None:
    expected = "uy vien"
    assert search_text("uỷ viên") == expected
    assert search_text("ủy viên") == expected
    assert search_text("uy vien") == expected
    assert search_text("ỦY VIÊN") == expected
    assert search_text(unicodedata.normalize("NFD", "Uỷ Viên")) == expected


def test_search_text_joins_parts() -> None:
    assert (
        search_text("Viện kiểm sát", "  tỉnh\u00a0Thái Bình ", "", "năm\u200b 2022")
        == "vien kiem sat tinh thai binh nam 2022"
    )
    assert search_text() == ""


# --- the fast paths against the first, per-character implementations ---------------------------
# clean_text and fold skip work (str.isprintable, one translate table); these oracles are their
# original character-by-character versions, kept here so that every code point is checked
# against what the functions always meant.

_ORACLE_INVISIBLE = frozenset(
    [chr(c) for c in range(0x200B, 0x2010)]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\ufeff", "\u00ad", "\u2060"]
)
_ORACLE_SPACES = re.compile(r" {2,}")
_ORACLE_LETTERS = str.maketrans(
    {"đ": "d", "ð": "d", "ø": "o", "ł": "l", "ß": "ss", "æ": "ae", "œ": "oe"}
)


def _oracle_clean_text(s: str, *, multiline: bool = False) -> str:
    if multiline:
        s = s.replace("\r\n", "\n")
    out: list[str] = []
    for ch in s:
        cp = ord(ch)
        if ch == "\n" or ch == "\t":
            out.append(ch if multiline else " ")
        elif ch in "\r\x85\u2028\u2029":
            out.append("\n" if multiline else " ")
        elif ch == "\x0b" or ch == "\x0c":
            out.append(" ")
        elif cp < 0x20 or 0x7F <= cp <= 0x9F or 0xD800 <= cp <= 0xDFFF:
            continue  # controls, lone surrogates
        elif ch in _ORACLE_INVISIBLE or 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE:
            continue  # invisible characters, noncharacters
        elif unicodedata.category(ch) == "Zs":
            out.append(" ")
        else:
            out.append(ch)
    text = unicodedata.normalize("NFC", "".join(out))
    if multiline:
        lines = (_ORACLE_SPACES.sub(" ", line).strip(" ") for line in text.split("\n"))
        return "\n".join(lines).strip()
    return _ORACLE_SPACES.sub(" ", text).strip(" ")


def _oracle_fold(s: str) -> str:
    out: list[str] = []
    base = ""
    for ch in unicodedata.normalize("NFD", s.lower()):
        if unicodedata.category(ch).startswith("M"):
            if not base.isalpha() or unicodedata.name(base, "").startswith("LATIN "):
                continue
        else:
            base = ch
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out).translate(_ORACLE_LETTERS))


def test_clean_text_equals_the_per_character_version_for_every_code_point() -> None:
    for cp in range(0x110000):
        ch = chr(cp)
        sample = f" {ch}\n {ch}b"
        for multiline in (False, True):
            assert clean_text(sample, multiline=multiline) == _oracle_clean_text(
                sample, multiline=multiline
            ), (hex(cp), multiline)


def test_clean_text_equals_the_per_character_version_on_mixed_text() -> None:
    pieces = [
        "Viện  kiểm sát", " ", "  ", "\n", "\r\n", "\t", "\u00a0", "\u200b", "\u2028", "e\u0301",
        "\x00", "\ud800", "\ufdd0", "\x85", " \n ", "Ủy ban", "\u3000", "\x0b",
    ]  # fmt: skip
    for combo in itertools.product(pieces, repeat=3):
        sample = "".join(combo)
        for multiline in (False, True):
            assert clean_text(sample, multiline=multiline) == _oracle_clean_text(
                sample, multiline=multiline
            ), (sample, multiline)


def test_fold_equals_the_per_character_version_for_every_code_point() -> None:
    """fold() takes a table-driven fast path; it must give exactly what decomposing and
    stripping character by character gives, for every character, alone and among Vietnamese."""
    for cp in range(0x110000):
        ch = chr(cp)
        assert fold(ch) == _oracle_fold(ch), hex(cp)
        sample = f"Ủy {ch.upper()}ệ" if not 0xD800 <= cp < 0xE000 else f"Ủy {ch}ệ"
        assert fold(sample) == _oracle_fold(sample), hex(cp)

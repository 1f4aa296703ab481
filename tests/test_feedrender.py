"""Tests for shared.feeds.formats: RSS 2.0, Atom (RFC 4287) and JSON Feed 1.1.

XML output is checked twice: with a strict lxml parser (``recover=False``),
which is what proves the bytes are well-formed, and with feedparser, which is
what real readers behave like.  feedparser 6 does not understand JSON Feed at
all (it reports any JSON document as not well-formed XML), so JSON output is
checked with ``json.loads`` against the JSON Feed 1.1 field list instead.
"""

import json
import re
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import feedparser
import pytest
from lxml import etree

from shared.feeds.formats import (
    CONTENT_TYPES,
    FORMATS,
    FeedEntry,
    FeedImage,
    FeedMeta,
    render_feed,
    scrub,
)

ATOM = "http://www.w3.org/2005/Atom"
CONTENT = "http://purl.org/rss/1.0/modules/content/"
DC = "http://purl.org/dc/elements/1.1/"
MEDIA = "http://search.yahoo.com/mrss/"
NS = {"atom": ATOM, "content": CONTENT, "dc": DC, "media": MEDIA}

XML_FORMATS = ("rss", "atom")

# 2022-01-12 01:16:46 UTC == 08:16:46 in Asia/Ho_Chi_Minh.
PUBLISHED = datetime(2022, 1, 12, 1, 16, 46, tzinfo=UTC)
UPDATED = datetime(2022, 1, 13, 1, 16, 46, 123456, tzinfo=UTC)

HOSTILE_TITLES = {
    "cdata_end": "Kết thúc ]]> CDATA",
    "script": "<script>alert(1)</script>",
    "entities": "&amp; & <",
    "emoji": "📰 Bản tin sáng",
    "vietnamese_nfd": unicodedata.normalize("NFD", "Tố Uyên viết về Viện kiểm sát"),
    "controls": "A\x00B\x01\x02\x03\x04\x05\x06\x07\x08C\x0b\x0cD\x0e\x0f\x10\x1fE",
    "lone_surrogate": "trước\ud800sau",
    "nonchar": "x\ufffey\uffffz",
    "mixed": "📰 <b>Tin</b> ]]> &amp; \x00\ud800\ufffe Đà Nẵng",
}


def xml(data: bytes) -> Any:
    """Parse strictly: any ill-formedness raises instead of being repaired."""
    return etree.fromstring(data, parser=etree.XMLParser(recover=False))


def expected(text: str) -> str:
    """What a reader must get back for ``text``: valid XML chars, NFC."""
    kept = "".join(
        ch
        for ch in text
        if ch in "\t\n\r"
        or (ord(ch) >= 0x20 and not 0xD800 <= ord(ch) <= 0xDFFF and ch not in "\ufffe\uffff")
    )
    return unicodedata.normalize("NFC", kept)


def make_meta(**overrides: Any) -> FeedMeta:
    values: dict[str, Any] = {
        "title": "Bản tin VKSND",
        "description": "Tin tức từ Viện kiểm sát nhân dân",
        "home_url": "https://vks.example.vn/tin-tuc/",
        "self_url": "https://vks.example.vn/feeds/all.xml",
        "feed_id": "urn:bantin:feed:all",
        "updated": UPDATED,
    }
    values.update(overrides)
    return FeedMeta(**values)


def make_entry(n: int = 1, **overrides: Any) -> FeedEntry:
    values: dict[str, Any] = {
        "id": f"urn:uuid:00000000-0000-4000-8000-{n:012d}",
        "url": f"https://vks.example.vn/tin-tuc/bai-{n}.html",
        "title": f"Hội nghị tổng kết công tác năm {n}",
        "summary": "Sáng nay, Viện kiểm sát tổ chức hội nghị.",
        "content_html": '<p>Nội dung <a href="https://vks.example.vn/x">đầy đủ</a>.</p>',
        "published": PUBLISHED,
        "updated": UPDATED,
        "author": "Tố Uyên",
        "unit": "Văn phòng VKSND tỉnh",
        "category": "Thời sự",
        "image": FeedImage(
            url=f"https://vks.example.vn/anh/{n}.jpg",
            mime="image/jpeg",
            width=800,
            height=600,
            length=12345,
        ),
    }
    values.update(overrides)
    return FeedEntry(**values)


FULL_META = make_meta(
    hub_url="https://hub.example.vn/",
    next_url="https://vks.example.vn/feeds/all.xml?page=3",
    prev_url="https://vks.example.vn/feeds/all.xml?page=1",
    first_url="https://vks.example.vn/feeds/all.xml",
    icon_url="https://vks.example.vn/icon.png",
)


def parsed(fmt: str, meta: FeedMeta, entries: list[FeedEntry]) -> Any:
    """Render and parse with feedparser, asserting the reader saw no error."""
    data = render_feed(fmt, meta, entries)
    result = feedparser.parse(data)
    assert result.bozo == 0, result.get("bozo_exception")
    return result


# --------------------------------------------------------------------------
# scrub
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "char", [chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)]]
)
def test_scrub_removes_each_invalid_c0_control(char: str) -> None:
    assert scrub(f"a{char}b") == "ab"


def test_scrub_keeps_tab_newline_carriage_return() -> None:
    assert scrub("a\tb\nc\rd") == "a\tb\nc\rd"


@pytest.mark.parametrize("char", ["\ud800", "\udbff", "\udc00", "\udfff", "\ufffe", "\uffff"])
def test_scrub_removes_surrogates_and_bmp_nonchars(char: str) -> None:
    assert scrub(f"x{char}y") == "xy"


def test_scrub_joins_a_split_surrogate_pair_instead_of_dropping_it() -> None:
    split = "".join(chr(u) for u in (0xD83D, 0xDCF0))  # 📰 as two code units
    assert scrub(f"a{split}b") == "a📰b"
    # A reversed pair is two lone surrogates, not a character.
    assert scrub("a\udcf0\ud83db") == "ab"


def test_scrub_returns_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "Đà Nẵng, Tố Uyên")
    assert nfd != "Đà Nẵng, Tố Uyên"
    assert scrub(nfd) == "Đà Nẵng, Tố Uyên"
    assert unicodedata.is_normalized("NFC", scrub(nfd + "\x00"))


def test_scrub_leaves_clean_text_alone() -> None:
    text = "Bản tin 📰 <b>&amp;</b> ]]> \U0001f600 \ue000 \ufffd"
    assert scrub(text) == text


# --------------------------------------------------------------------------
# all formats
# --------------------------------------------------------------------------


def test_public_constants() -> None:
    assert FORMATS == ("rss", "atom", "json")
    assert CONTENT_TYPES == {
        "rss": "application/rss+xml; charset=utf-8",
        "atom": "application/atom+xml; charset=utf-8",
        "json": "application/feed+json; charset=utf-8",
    }


@pytest.mark.parametrize("fmt", ["xml", "RSS", "", "rss2", "jsonfeed"])
def test_unknown_format_is_refused(fmt: str) -> None:
    with pytest.raises(ValueError, match="unknown feed format"):
        render_feed(fmt, make_meta(), [make_entry()])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "where",
    ["meta.updated", "entry.published", "entry.updated"],
)
def test_naive_datetime_is_refused(fmt: str, where: str) -> None:
    naive = datetime(2022, 1, 12, 8, 16, 46)  # noqa: DTZ001 - the point of the test
    meta, entry = make_meta(), make_entry()
    if where == "meta.updated":
        meta = make_meta(updated=naive)
    elif where == "entry.published":
        entry = make_entry(published=naive)
    else:
        entry = make_entry(updated=naive)
    with pytest.raises(ValueError, match="no timezone info"):
        render_feed(fmt, meta, [entry])


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_timezone_is_refused(fmt: str) -> None:
    with pytest.raises(ValueError, match="time zone"):
        render_feed(fmt, make_meta(timezone="Asia/Sai_Gon_Nowhere"), [make_entry()])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("field", "value"),
    [("url", "/tin-tuc/bai-1.html"), ("url", "javascript:alert(1)"), ("title", " \x00 ")],
)
def test_invalid_entry_data_is_refused(fmt: str, field: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"entries\[0\]\.{field}"):
        render_feed(fmt, make_meta(), [make_entry(**{field: value})])


@pytest.mark.parametrize("fmt", FORMATS)
def test_output_is_utf8_nfc_and_deterministic(fmt: str) -> None:
    entries = [
        make_entry(1, title=unicodedata.normalize("NFD", "Tố Uyên ở Đà Nẵng")),
        make_entry(2, summary=unicodedata.normalize("NFD", "Văn phòng VKSND tỉnh")),
    ]
    data = render_feed(fmt, FULL_META, entries)
    assert isinstance(data, bytes)
    text = data.decode("utf-8")  # strict: raises on invalid UTF-8
    assert unicodedata.is_normalized("NFC", text)
    # Non-ASCII is written as UTF-8, not as escapes.
    assert "Tố Uyên ở Đà Nẵng" in text
    # No "now()" default leaks in: the same input gives the same bytes.
    assert render_feed(fmt, FULL_META, entries) == data


@pytest.mark.parametrize("fmt", FORMATS)
def test_entries_keep_the_given_order(fmt: str) -> None:
    # Deliberately not sorted by date: the caller's order wins.
    order = [3, 1, 5, 2, 4]
    entries = [make_entry(n, published=PUBLISHED + timedelta(hours=n)) for n in order]
    data = render_feed(fmt, make_meta(), entries)
    if fmt == "json":
        ids = [item["id"] for item in json.loads(data)["items"]]
    else:
        ids = [e.id for e in parsed(fmt, make_meta(), entries).entries]
    assert ids == [e.id for e in entries]


def test_fifty_entries_render_in_every_format() -> None:
    entries = [make_entry(n) for n in range(50)]
    for fmt in XML_FORMATS:
        assert len(parsed(fmt, FULL_META, entries).entries) == 50
    assert len(json.loads(render_feed("json", FULL_META, entries))["items"]) == 50


# --------------------------------------------------------------------------
# hostile text
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", XML_FORMATS)
@pytest.mark.parametrize("name", sorted(HOSTILE_TITLES))
def test_hostile_title_survives_xml_formats(fmt: str, name: str) -> None:
    title = HOSTILE_TITLES[name]
    want = expected(title)
    assert want  # the test data must not scrub down to nothing
    meta = make_meta(title=title, description=title)
    data = render_feed(fmt, meta, [make_entry(title=title)])

    root = xml(data)
    if fmt == "rss":
        item_title = root.findtext("channel/item/title")
        feed_title = root.findtext("channel/title")
    else:
        item_title = root.findtext("atom:entry/atom:title", namespaces=NS)
        feed_title = root.findtext("atom:title", namespaces=NS)
    assert item_title == want
    assert feed_title == want

    result = feedparser.parse(data)
    assert result.bozo == 0, result.get("bozo_exception")
    assert unicodedata.normalize("NFC", result.entries[0].title) == want
    assert unicodedata.normalize("NFC", result.feed.title) == want


@pytest.mark.parametrize("name", sorted(HOSTILE_TITLES))
def test_hostile_title_survives_json(name: str) -> None:
    title = HOSTILE_TITLES[name]
    data = render_feed("json", make_meta(title=title), [make_entry(title=title)])
    feed = json.loads(data.decode("utf-8"))
    assert feed["title"] == expected(title)
    assert feed["items"][0]["title"] == expected(title)


HOSTILE_BODY = (
    '<p>Đoạn 1 ]]> vẫn tiếp</p><script>alert("x")</script>'
    "<p>&amp; & < \x00\x0b\ud800\ufffe 📰 <![CDATA[ lồng ]]></p>"
)


@pytest.mark.parametrize("fmt", XML_FORMATS)
def test_hostile_body_and_summary_survive_strict_xml(fmt: str) -> None:
    summary = 'Tóm tắt <script>x</script> a < b ]]> & "q" \x07'
    entry = make_entry(content_html=HOSTILE_BODY, summary=summary, author="A\x00B", unit="]]>")
    data = render_feed(fmt, make_meta(), [entry])
    root = xml(data)
    if fmt == "rss":
        assert root.findtext("channel/item/content:encoded", namespaces=NS) == expected(
            HOSTILE_BODY
        )
        # RSS <description> is HTML to readers, so the plain text is escaped.
        description = root.findtext("channel/item/description")
        assert description == ('Tóm tắt &lt;script&gt;x&lt;/script&gt; a &lt; b ]]&gt; &amp; "q"')
        assert root.findtext("channel/item/dc:creator", namespaces=NS) == "AB - ]]>"
    else:
        content = root.find("atom:entry/atom:content", namespaces=NS)
        assert content.get("type") == "html"
        assert content.text == expected(HOSTILE_BODY)
        # Summaries are trimmed: the trailing BEL left a trailing space.
        assert root.findtext("atom:entry/atom:summary", namespaces=NS) == expected(summary).strip()
    # Text is escaped, never wrapped in CDATA, so a raw "]]>" cannot appear.
    assert b"]]>" not in data
    result = feedparser.parse(data)
    assert result.bozo == 0, result.get("bozo_exception")
    # feedparser sanitises HTML the way readers do: the script must be gone.
    assert "<script" not in result.entries[0].content[0].value
    body = result.entries[0].content[0].value
    assert "Đoạn 1 ]]> vẫn tiếp" in body
    assert "📰" in body


def test_hostile_body_survives_json() -> None:
    entry = make_entry(content_html=HOSTILE_BODY, summary="a\x00 < b")
    item = json.loads(render_feed("json", make_meta(), [entry]))["items"][0]
    assert item["content_html"] == expected(HOSTILE_BODY)
    assert item["summary"] == "a < b"


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_urls_and_ids_are_scrubbed(fmt: str) -> None:
    entry = make_entry(id="urn:uuid:\x00abc\ufffe", url="https://vks.example.vn/a\x01b")
    data = render_feed(fmt, make_meta(), [entry])
    text = data.decode("utf-8")
    assert "urn:uuid:abc" in text
    assert "https://vks.example.vn/ab" in text
    if fmt != "json":
        xml(data)


# --------------------------------------------------------------------------
# RSS 2.0
# --------------------------------------------------------------------------


def test_rss_channel() -> None:
    data = render_feed("rss", FULL_META, [make_entry()])
    root = xml(data)
    assert root.tag == "rss"
    assert root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel.findtext("title") == "Bản tin VKSND"
    assert channel.findtext("link") == "https://vks.example.vn/tin-tuc/"
    assert channel.findtext("description") == "Tin tức từ Viện kiểm sát nhân dân"
    assert channel.findtext("language") == "vi"
    assert channel.findtext("generator") == "bantin"
    # lastBuildDate: RFC 822 in the site zone, whole seconds.
    assert channel.findtext("lastBuildDate") == "Thu, 13 Jan 2022 08:16:46 +0700"
    assert channel.findtext("image/url") == "https://vks.example.vn/icon.png"

    links = {link.get("rel"): link for link in channel.findall("atom:link", namespaces=NS)}
    assert set(links) == {"self", "hub", "first", "previous", "next"}
    assert links["self"].get("href") == "https://vks.example.vn/feeds/all.xml"
    assert links["self"].get("type") == "application/rss+xml"
    assert links["hub"].get("href") == "https://hub.example.vn/"
    assert links["next"].get("href") == "https://vks.example.vn/feeds/all.xml?page=3"
    assert links["previous"].get("href") == "https://vks.example.vn/feeds/all.xml?page=1"
    assert links["first"].get("href") == "https://vks.example.vn/feeds/all.xml"
    # Channel links come before the items (RSS puts items last by convention).
    children = [child.tag for child in channel]
    assert children.index("item") > max(
        i for i, tag in enumerate(children) if tag == f"{{{ATOM}}}link"
    )

    result = parsed("rss", FULL_META, [make_entry()])
    assert result.version == "rss20"
    rels = {link.rel: link.href for link in result.feed.links}
    assert rels["hub"] == "https://hub.example.vn/"
    assert rels["next"] == "https://vks.example.vn/feeds/all.xml?page=3"


def test_rss_without_optional_links_has_only_self() -> None:
    root = xml(render_feed("rss", make_meta(), [make_entry()]))
    rels = [link.get("rel") for link in root.findall("channel/atom:link", namespaces=NS)]
    assert rels == ["self"]
    assert root.find("channel/image") is None


def test_rss_item() -> None:
    entry = make_entry()
    root = xml(render_feed("rss", make_meta(), [entry]))
    item = root.find("channel/item")
    assert item.findtext("title") == entry.title
    assert item.findtext("link") == entry.url
    guid = item.find("guid")
    assert guid.text == entry.id
    assert guid.get("isPermaLink") == "false"
    assert item.findtext("pubDate") == "Wed, 12 Jan 2022 08:16:46 +0700"
    assert item.findtext("category") == "Thời sự"
    assert item.findtext("description") == entry.summary
    assert item.findtext("content:encoded", namespaces=NS) == entry.content_html
    assert item.findtext("dc:creator", namespaces=NS) == "Tố Uyên - Văn phòng VKSND tỉnh"
    # RSS <author> must be an e-mail address; we must not emit a bare name.
    assert item.find("author") is None

    enclosure = item.find("enclosure")
    assert enclosure.attrib == {
        "url": "https://vks.example.vn/anh/1.jpg",
        "length": "12345",
        "type": "image/jpeg",
    }
    media = item.find("media:content", namespaces=NS)
    assert media is not None, "media:content must sit directly in the item"
    assert media.get("url") == "https://vks.example.vn/anh/1.jpg"
    assert media.get("type") == "image/jpeg"
    assert media.get("medium") == "image"
    assert (media.get("width"), media.get("height")) == ("800", "600")
    assert media.get("fileSize") == "12345"
    assert item.find("media:group", namespaces=NS) is None


def test_rss_item_as_seen_by_feedparser() -> None:
    entry = make_entry()
    result = parsed("rss", make_meta(), [entry])
    item = result.entries[0]
    assert item.id == entry.id
    assert item.guidislink is False
    assert item.link == entry.url
    assert item.author == "Tố Uyên - Văn phòng VKSND tỉnh"
    assert item.published_parsed[:6] == (2022, 1, 12, 1, 16, 46)  # normalised to UTC
    assert item.enclosures[0].href == "https://vks.example.vn/anh/1.jpg"
    assert item.media_content[0]["width"] == "800"
    assert item.tags[0].term == "Thời sự"


def test_rss_guid_is_stable_across_edits() -> None:
    before = make_entry(title="Bản nháp", updated=PUBLISHED)
    after = replace(
        before,
        title="Bản chính thức",
        content_html="<p>Đã sửa</p>",
        updated=PUBLISHED + timedelta(days=2),
        url="https://vks.example.vn/tin-tuc/ban-chinh-thuc.html",
    )
    guids = [
        xml(render_feed("rss", make_meta(), [e])).findtext("channel/item/guid")
        for e in (before, after)
    ]
    assert guids == [before.id, before.id]


@pytest.mark.parametrize(
    "published",
    [
        PUBLISHED,
        PUBLISHED.astimezone(timezone(timedelta(hours=9))),
        PUBLISHED.astimezone(timezone(timedelta(hours=-5, minutes=-30))),
        PUBLISHED.replace(microsecond=999999),
    ],
)
def test_rss_pubdate_is_in_site_zone(published: datetime) -> None:
    root = xml(render_feed("rss", make_meta(), [make_entry(published=published)]))
    assert root.findtext("channel/item/pubDate") == "Wed, 12 Jan 2022 08:16:46 +0700"


def test_rss_pubdate_pattern_for_many_dates() -> None:
    entries = [make_entry(n, published=PUBLISHED + timedelta(days=37 * n)) for n in range(12)]
    root = xml(render_feed("rss", make_meta(), entries))
    pattern = re.compile(
        r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
        r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0700$"
    )
    dates = [item.findtext("pubDate") for item in root.iter("item")]
    assert len(dates) == 12
    assert all(pattern.match(d) for d in dates), dates


def test_rss_other_site_timezone() -> None:
    root = xml(render_feed("rss", make_meta(timezone="UTC"), [make_entry()]))
    assert root.findtext("channel/item/pubDate") == "Wed, 12 Jan 2022 01:16:46 +0000"


def test_sub_minute_historical_offset_falls_back_to_utc() -> None:
    # Asia/Ho_Chi_Minh used LMT (+07:06:40) before 1906; neither RFC 822 nor
    # RFC 3339 can write seconds in an offset.
    old = datetime(1900, 1, 1, 12, 0, 0, tzinfo=UTC)
    root = xml(render_feed("rss", make_meta(), [make_entry(published=old)]))
    assert root.findtext("channel/item/pubDate") == "Mon, 01 Jan 1900 12:00:00 +0000"
    item = json.loads(render_feed("json", make_meta(), [make_entry(published=old)]))["items"][0]
    assert item["date_published"] == "1900-01-01T12:00:00+00:00"


def test_rss_unknown_image_length_is_zero() -> None:
    image = FeedImage(url="https://vks.example.vn/a.png", mime="image/png", width=1, height=2)
    item = xml(render_feed("rss", make_meta(), [make_entry(image=image)])).find("channel/item")
    assert item.find("enclosure").get("length") == "0"
    assert item.find("media:content", namespaces=NS).get("fileSize") is None


def test_rss_optional_item_parts_are_omitted() -> None:
    entry = make_entry(category=None, image=None, author="", unit="")
    item = xml(render_feed("rss", make_meta(), [entry])).find("channel/item")
    assert item.find("category") is None
    assert item.find("enclosure") is None
    assert item.find("media:content", namespaces=NS) is None
    assert item.find("dc:creator", namespaces=NS) is None


def test_rss_without_summary_carries_html_in_description() -> None:
    # feedgen's rule: with no summary the HTML body becomes <description>.
    entry = make_entry(summary=" ")
    item = xml(render_feed("rss", make_meta(), [entry])).find("channel/item")
    assert item.findtext("description") == entry.content_html
    assert item.find("content:encoded", namespaces=NS) is None


def test_rss_empty_description_falls_back_to_title() -> None:
    root = xml(render_feed("rss", make_meta(description=""), []))
    assert root.findtext("channel/description") == "Bản tin VKSND"


def test_unit_alone_is_the_byline() -> None:
    entry = make_entry(author="", unit="Văn phòng VKSND tỉnh")
    item = xml(render_feed("rss", make_meta(), [entry])).find("channel/item")
    assert item.findtext("dc:creator", namespaces=NS) == "Văn phòng VKSND tỉnh"


# --------------------------------------------------------------------------
# Atom
# --------------------------------------------------------------------------


def test_atom_feed() -> None:
    root = xml(render_feed("atom", FULL_META, [make_entry()]))
    assert root.tag == f"{{{ATOM}}}feed"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "vi"
    assert root.findtext("atom:id", namespaces=NS) == "urn:bantin:feed:all"
    assert root.findtext("atom:title", namespaces=NS) == "Bản tin VKSND"
    assert root.findtext("atom:subtitle", namespaces=NS) == "Tin tức từ Viện kiểm sát nhân dân"
    assert root.findtext("atom:updated", namespaces=NS) == "2022-01-13T08:16:46+07:00"
    assert root.findtext("atom:generator", namespaces=NS) == "bantin"
    assert root.findtext("atom:icon", namespaces=NS) == "https://vks.example.vn/icon.png"
    links = {link.get("rel"): link.attrib for link in root.findall("atom:link", namespaces=NS)}
    assert links["alternate"] == {
        "href": "https://vks.example.vn/tin-tuc/",
        "rel": "alternate",
        "type": "text/html",
    }
    assert links["self"] == {
        "href": "https://vks.example.vn/feeds/all.xml",
        "rel": "self",
        "type": "application/atom+xml",
    }
    assert links["hub"]["href"] == "https://hub.example.vn/"
    assert links["next"]["href"] == "https://vks.example.vn/feeds/all.xml?page=3"
    assert links["previous"]["href"] == "https://vks.example.vn/feeds/all.xml?page=1"
    assert links["first"]["href"] == "https://vks.example.vn/feeds/all.xml"
    # Every entry has an author, so no feed-level fallback author is needed.
    assert root.find("atom:author", namespaces=NS) is None

    result = parsed("atom", FULL_META, [make_entry()])
    assert result.version == "atom10"
    rels = {link.rel: link.href for link in result.feed.links}
    assert rels["previous"] == "https://vks.example.vn/feeds/all.xml?page=1"


def test_atom_without_optional_links() -> None:
    root = xml(render_feed("atom", make_meta(), [make_entry()]))
    rels = sorted(link.get("rel") for link in root.findall("atom:link", namespaces=NS))
    assert rels == ["alternate", "self"]
    assert root.find("atom:icon", namespaces=NS) is None


def test_atom_entry() -> None:
    entry = make_entry()
    node = xml(render_feed("atom", make_meta(), [entry])).find("atom:entry", namespaces=NS)
    assert node.findtext("atom:id", namespaces=NS) == entry.id
    assert node.findtext("atom:title", namespaces=NS) == entry.title
    assert node.findtext("atom:updated", namespaces=NS) == "2022-01-13T08:16:46+07:00"
    assert node.findtext("atom:published", namespaces=NS) == "2022-01-12T08:16:46+07:00"
    assert node.findtext("atom:author/atom:name", namespaces=NS) == "Tố Uyên - Văn phòng VKSND tỉnh"
    assert node.findtext("atom:summary", namespaces=NS) == entry.summary
    content = node.find("atom:content", namespaces=NS)
    assert content.get("type") == "html"
    assert content.text == entry.content_html
    category = node.find("atom:category", namespaces=NS)
    assert category.attrib == {"term": "Thời sự", "label": "Thời sự"}

    # feedgen 1.0.0 drops rel/type/length on entry links; ours must keep them.
    links = [link.attrib for link in node.findall("atom:link", namespaces=NS)]
    assert links == [
        {"rel": "alternate", "type": "text/html", "href": entry.url},
        {
            "rel": "enclosure",
            "type": "image/jpeg",
            "href": "https://vks.example.vn/anh/1.jpg",
            "length": "12345",
        },
    ]


def test_atom_entry_as_seen_by_feedparser() -> None:
    entry = make_entry()
    item = parsed("atom", make_meta(), [entry]).entries[0]
    assert item.id == entry.id
    assert item.link == entry.url
    assert item.author == "Tố Uyên - Văn phòng VKSND tỉnh"
    assert item.enclosures[0].href == "https://vks.example.vn/anh/1.jpg"
    assert item.enclosures[0].type == "image/jpeg"
    assert item.tags[0].label == "Thời sự"
    assert item.published_parsed[:6] == (2022, 1, 12, 1, 16, 46)
    assert item.updated_parsed[:6] == (2022, 1, 13, 1, 16, 46)


def test_atom_enclosure_without_length() -> None:
    image = FeedImage(url="https://vks.example.vn/a.png", mime="image/png", width=1, height=2)
    node = xml(render_feed("atom", make_meta(), [make_entry(image=image)]))
    enclosure = node.find("atom:entry/atom:link[@rel='enclosure']", namespaces=NS)
    assert enclosure.attrib == {
        "rel": "enclosure",
        "type": "image/png",
        "href": "https://vks.example.vn/a.png",
    }


def test_atom_entry_without_author_inherits_feed_author() -> None:
    entries = [make_entry(1), make_entry(2, author="", unit="")]
    root = xml(render_feed("atom", make_meta(), entries))
    # RFC 4287 4.1.2: without it the second entry would be invalid.
    assert root.findtext("atom:author/atom:name", namespaces=NS) == "Bản tin VKSND"
    second = root.findall("atom:entry", namespaces=NS)[1]
    assert second.find("atom:author", namespaces=NS) is None


def test_atom_empty_summary_and_category_are_omitted() -> None:
    entry = make_entry(summary="  ", category=None, image=None)
    node = xml(render_feed("atom", make_meta(description=""), [entry]))
    assert node.find("atom:subtitle", namespaces=NS) is None
    item = node.find("atom:entry", namespaces=NS)
    assert item.find("atom:summary", namespaces=NS) is None
    assert item.find("atom:category", namespaces=NS) is None
    assert [link.get("rel") for link in item.findall("atom:link", namespaces=NS)] == ["alternate"]


# --------------------------------------------------------------------------
# JSON Feed 1.1
# --------------------------------------------------------------------------

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def test_json_feed_required_fields_and_types() -> None:
    data = render_feed("json", FULL_META, [make_entry(1), make_entry(2)])
    feed = json.loads(data.decode("utf-8"))
    # Required top-level fields.
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(feed["title"], str)
    assert feed["title"] == "Bản tin VKSND"
    assert isinstance(feed["items"], list)
    # Optional fields we always know.
    assert feed["home_page_url"] == "https://vks.example.vn/tin-tuc/"
    assert feed["feed_url"] == "https://vks.example.vn/feeds/all.xml"
    assert feed["description"] == "Tin tức từ Viện kiểm sát nhân dân"
    assert feed["language"] == "vi"
    assert feed["icon"] == "https://vks.example.vn/icon.png"
    assert feed["hubs"] == [{"type": "WebSub", "url": "https://hub.example.vn/"}]
    assert feed["next_url"] == "https://vks.example.vn/feeds/all.xml?page=3"
    # JSON Feed has no previous/first; nothing invented.
    assert set(feed) <= {
        "version",
        "title",
        "home_page_url",
        "feed_url",
        "description",
        "icon",
        "language",
        "hubs",
        "next_url",
        "items",
    }

    for item in feed["items"]:
        assert isinstance(item["id"], str)
        assert isinstance(item["content_html"], str) or isinstance(item["content_text"], str)
        for key in ("url", "title", "summary", "image", "language"):
            assert isinstance(item[key], str), key
        for key in ("date_published", "date_modified"):
            assert RFC3339.match(item[key]), item[key]
        assert isinstance(item["authors"], list)
        assert all(isinstance(a["name"], str) for a in item["authors"])
        assert isinstance(item["tags"], list)
        assert all(isinstance(t, str) for t in item["tags"])


def test_json_item_values() -> None:
    entry = make_entry()
    data = render_feed("json", make_meta(), [entry])
    item = json.loads(data)["items"][0]
    assert item == {
        "id": entry.id,
        "url": entry.url,
        "title": entry.title,
        "content_html": entry.content_html,
        "summary": entry.summary,
        "image": "https://vks.example.vn/anh/1.jpg",
        "date_published": "2022-01-12T08:16:46+07:00",
        "date_modified": "2022-01-13T08:16:46+07:00",
        "authors": [{"name": "Tố Uyên - Văn phòng VKSND tỉnh"}],
        "language": "vi",
        "tags": ["Thời sự"],
    }
    assert datetime.fromisoformat(item["date_published"]) == PUBLISHED
    # ensure_ascii=False: the bytes carry UTF-8, not \\u escapes.
    assert "Tố Uyên".encode() in data
    assert b"\\u" not in data


def test_json_without_optional_parts() -> None:
    entry = make_entry(summary="", image=None, category=None, author="", unit="")
    feed = json.loads(render_feed("json", make_meta(description=""), [entry]))
    for key in ("description", "icon", "hubs", "next_url"):
        assert key not in feed
    item = feed["items"][0]
    for key in ("summary", "image", "tags", "authors"):
        assert key not in item


# --------------------------------------------------------------------------
# empty feeds
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", XML_FORMATS)
def test_empty_feed_is_valid_xml(fmt: str) -> None:
    data = render_feed(fmt, FULL_META, [])
    root = xml(data)
    result = parsed(fmt, FULL_META, [])
    assert result.entries == []
    assert result.feed.title == "Bản tin VKSND"
    if fmt == "rss":
        assert root.find("channel/item") is None
        assert root.findtext("channel/link") == "https://vks.example.vn/tin-tuc/"
    else:
        assert root.find("atom:entry", namespaces=NS) is None
        assert root.find("atom:author", namespaces=NS) is None


def test_empty_feed_is_valid_json() -> None:
    feed = json.loads(render_feed("json", FULL_META, []))
    assert feed["items"] == []
    assert feed["version"] == "https://jsonfeed.org/version/1.1"

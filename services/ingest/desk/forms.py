"""The article form: its fields named as in the API, turned into exactly the JSON the API
takes, and the API's field errors turned back into Vietnamese messages beside each field."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.ingest import uploads
from shared.models import Article
from shared.problems import Problem

TEXT_FIELDS = ("title", "category", "summary", "body", "author", "unit", "published_at")
PHOTO_ROLES = {"inline": "Trong bài", "cover": "Ảnh đại diện", "gallery": "Thư viện ảnh"}
PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
ROWS_WITHOUT_JS = 3
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


@dataclass(slots=True)
class Row:
    """A photo row: the file (streamed; its part name), its caption and role."""

    part: str | None = None
    caption: str = ""
    role: str = "inline"
    error: str = ""
    photo: uploads.Photo | None = None
    wanted: str = ""  # the name the form's script gave the photo (its body says cid:NAME)


@dataclass(slots=True)
class ArticleForm:
    values: dict[str, str] = field(default_factory=lambda: dict.fromkeys(TEXT_FIELDS, ""))
    rows: list[Row] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def padded_rows(self) -> list[Row]:
        """Rows to show: the posted ones, and empty ones up to three (for the no-JS form)."""
        return self.rows + [Row() for _ in range(max(0, ROWS_WITHOUT_JS - len(self.rows)))]

    def photo_rows(self) -> list[Row]:
        return [row for row in self.rows if row.part is not None]

    def article(self, zone: ZoneInfo) -> dict[str, Any]:
        """The API's JSON for a new article."""
        data: dict[str, Any] = {
            name: self.values[name] for name in TEXT_FIELDS if name != "published_at"
        }
        when = self.published_at(zone)
        if when:
            data["published_at"] = when
        data["images"] = [
            {"part": row.part, "caption": row.caption, "role": row.role}
            for row in self.photo_rows()
        ]
        return data

    def published_at(self, zone: ZoneInfo) -> str | None:
        """The site's local time from the form, as ISO 8601 with its offset; None for now."""
        raw = self.values.get("published_at", "").strip()
        if not raw:
            return None
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            return raw  # the API's validation says what is wrong with it
        if when.tzinfo is None:
            when = when.replace(tzinfo=zone)
        return when.isoformat()


def from_parts(form: uploads.Form) -> ArticleForm:
    """A posted new-article form: text fields, then rows of photo, caption, role (and, with
    JavaScript, an optional `part` naming the photo for <img src="cid:...">)."""
    result = ArticleForm()
    for part in form.parts:
        if part.file:
            row = Row(part=part.photo.part if part.photo else None, photo=part.photo)
            if part.refused is not None:
                row.error = photo_message(part.refused)
            result.rows.append(row)
        elif part.name in ("caption", "role", "part") and result.rows:
            setattr(result.rows[-1], "wanted" if part.name == "part" else part.name, part.value)
        elif part.name in TEXT_FIELDS:
            result.values[part.name] = part.value
    # The script's names, all at once (one by one, a new name could be another's old one).
    named = [row for row in result.rows if row.photo is not None]
    wanted = [row.wanted for row in named]
    if named and all(PART.fullmatch(w) for w in wanted) and len(set(wanted)) == len(wanted):
        for row in named:
            assert row.photo is not None
            row.photo.part = row.part = row.wanted
    return result


def from_post(data: dict[str, str]) -> ArticleForm:
    return ArticleForm(values={name: data.get(name, "") for name in TEXT_FIELDS})


def from_article(article: Article, body: str, zone: ZoneInfo) -> ArticleForm:
    return ArticleForm(
        values={
            "title": article.title,
            "category": article.category.slug,
            "summary": article.summary,
            "body": body,
            "author": article.author,
            "unit": article.unit,
            "published_at": local_time(article.published_at, zone),
        }
    )


def local_time(when: datetime | None, zone: ZoneInfo) -> str:
    return when.astimezone(zone).strftime(LOCAL_FORMAT) if when else ""


def edit_changes(form: ArticleForm, shown_time: str, zone: ZoneInfo) -> dict[str, Any]:
    """The PATCH body: every text field; the time only when the writer changed what the form
    showed (it shows minutes, and a worker sets the time when it publishes)."""
    changes: dict[str, Any] = {
        name: form.values[name] for name in TEXT_FIELDS if name != "published_at"
    }
    if form.values["published_at"].strip() != shown_time.strip():
        changes["published_at"] = form.published_at(zone)
    return changes


def digest(form: ArticleForm) -> str:
    """What the writer started from: the text, not the status (a worker publishing the article
    changes its version, and that is no reason to call an edit a collision)."""
    text = "\0".join(form.values[name] for name in TEXT_FIELDS if name != "published_at")
    return hashlib.sha256(text.encode()).hexdigest()


# --- Vietnamese messages ----

_MESSAGES = [
    (re.compile(r"^is required"), "Cần điền mục này."),
    (re.compile(r"^must not be blank"), "Cần điền mục này."),
    (
        re.compile(r"^is too long \((\d+) characters; at most (\d+)\)"),
        r"Quá dài: \1 ký tự, tối đa \2.",
    ),
    (re.compile(r"^unknown category"), "Chuyên mục này không có; hãy chọn trong danh sách."),
    (
        re.compile(r"^category .* is retired"),
        "Chuyên mục này đã ngừng, không nhận bài mới; hãy chọn chuyên mục khác.",
    ),
    (
        re.compile(r"^(is not an ISO 8601|needs a UTC offset|must be an ISO 8601)"),
        "Thời gian chưa đúng; hãy chọn ngày và giờ.",
    ),
    (
        re.compile(r"^refers to photo cid:(\S+), which is not in images"),
        r"Nội dung có chèn ảnh \1 nhưng ảnh này không có trong danh sách ảnh.",
    ),
    (re.compile(r"^must be one of"), "Hãy chọn một giá trị trong danh sách."),
]


def message(text: str) -> str:
    for pattern, vietnamese in _MESSAGES:
        if pattern.search(text):
            return pattern.sub(vietnamese, text) if "\\" in vietnamese else vietnamese
    return "Giá trị chưa hợp lệ (" + text + ")."


def photo_message(problem: Problem) -> str:
    kind = problem.kind
    if kind == "unsupported-image":
        if "HEIC" in problem.detail or "HEIF" in problem.detail:
            return "Ảnh HEIC (iPhone) chưa đọc được; hãy xuất ảnh sang JPEG rồi chọn lại."
        return "Tệp này không phải ảnh JPEG, PNG hay WebP."
    if kind == "too-large":
        if "pixels" in problem.detail:
            return "Ảnh có quá nhiều điểm ảnh; hãy thu nhỏ ảnh rồi chọn lại."
        return "Ảnh quá lớn; hãy thu nhỏ ảnh rồi chọn lại."
    if kind == "undecodable-image":
        return "Ảnh bị hỏng hoặc không đọc được; hãy chọn ảnh khác."
    return "Ảnh không nhận được: " + problem.detail


def apply_errors(form: ArticleForm, problem: Problem) -> None:
    """Each error beside its field: text fields by name, photo fields by row."""
    photo_rows = form.photo_rows()
    for error in problem.errors or []:
        name = error.get("field", "")
        text = message(error.get("message", ""))
        match = re.match(r"images\.(\d+)\.(\w+)", name)
        if match and int(match.group(1)) < len(photo_rows):
            photo_rows[int(match.group(1))].error = text
        elif name in TEXT_FIELDS:
            form.errors.setdefault(name, text)
        else:
            form.errors.setdefault("form", text)
    if not problem.errors:
        form.errors["form"] = problem.detail or problem.title

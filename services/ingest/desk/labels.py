"""What office staff read: statuses, roles and history in Vietnamese, times the Vietnamese way."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from shared.models import STATUSES

STATUS = {
    "pending": "Chờ duyệt",
    "returned": "Bị trả lại",
    "processing": "Đang xử lý",
    "scheduled": "Hẹn giờ đăng",
    "published": "Đã đăng",
    "failed": "Lỗi",
    "unpublished": "Đã gỡ",
}
# Statuses after which the article's page stops asking for news: all but `processing`.
SETTLED = tuple(s for s in STATUSES if s != "processing")
ROLE = {"submitter": "Người viết bài", "editor": "Biên tập viên", "admin": "Quản trị"}
EVENT = {
    "submitted": "Gửi bài",
    "edited": "Sửa bài",
    "resubmitted": "Sửa và gửi lại",
    "approved": "Duyệt đăng",
    "returned": "Trả lại",
    "unpublished": "Gỡ bài",
}


def when(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%d/%m/%Y %H:%M") if value else ""

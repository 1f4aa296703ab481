"""Vietnamese labels for everything readers see on the published site.

This is the single catalog used by the publisher templates (passed to every
template as ``labels``).  Keys must not shadow ``dict`` attributes such as
``items`` or ``get``: Jinja resolves ``labels.items`` to the method first.
Entries containing ``%(name)s`` are rendered with Jinja's ``format`` filter.
"""

from __future__ import annotations

from typing import Final

__all__ = ["LABELS"]

LABELS: Final[dict[str, str]] = {
    # Navigation and page chrome
    "home": "Trang chủ",
    "main_nav": "Chuyên mục chính",
    "skip_to_content": "Bỏ qua đến nội dung chính",
    "sidebar": "Liên kết và thống kê",
    "back_to_top": "Về đầu trang",
    # Search
    "search": "Tìm kiếm",
    "search_label": "Từ khóa tìm kiếm",
    "search_placeholder": "Nhập từ khóa…",
    "search_submit": "Tìm",
    "search_hint": "Nhập từ khóa để tìm bài viết.",
    "search_results": "Tìm thấy %(total)s kết quả cho từ khóa “%(q)s”",
    "search_results_more": "Tìm thấy hơn %(total)s kết quả cho từ khóa “%(q)s”; dưới đây là"
    " %(total)s bài mới nhất, xếp theo mức độ phù hợp",
    "no_results": "Không tìm thấy kết quả phù hợp.",
    "search_past_last": "Trang này không có kết quả; từ khóa “%(q)s” có %(total)s kết quả.",
    "search_first_page": "Xem trang đầu",
    # Listings
    "read_more": "Xem tiếp",
    "category_empty": "Chuyên mục này chưa có bài viết.",
    "pagination": "Phân trang",
    "page_number": "Trang %(page)s",
    "page_prev": "Trang trước",
    "page_next": "Trang sau",
    # Article
    "published": "Ngày đăng",
    "updated": "Cập nhật",
    "gallery_default": "Hình ảnh",
    "related": "Tin liên quan",
    # Sidebar statistics
    "stats_title": "Thống kê",
    "online": "Khách online",
    "total": "Tổng số truy cập",
    # Footer
    "feeds": "Tin RSS",
    # Errors
    "not_found_title": "Không tìm thấy trang",
    "not_found_message": "Trang bạn tìm không tồn tại hoặc đã được chuyển đi.",
    "gone_title": "Bài viết đã được gỡ",
    "gone_message": "Bài viết này đã được gỡ khỏi trang thông tin.",
    "category_gone_title": "Chuyên mục đã ngừng",
    "category_gone_message": "Chuyên mục này đã ngừng cập nhật. Mời bạn xem tin bài ở các"
    " chuyên mục khác trên trang chủ.",
    "error_title": "Đã xảy ra lỗi",
    "error_code": "Mã lỗi",
    "back_home": "Về trang chủ",
}

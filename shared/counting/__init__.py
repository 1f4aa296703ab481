"""Page views, counted exactly once. The modules follow a view's trip:

1. record: the publisher sees an HTML page answered 200 and names its reader (record.py says
   what counts and who is one visitor).
2. buffer: the publisher's process holds the views as the stream's lines, identical views of one
   second once with their number, and sends them to Redis in batches.
3. stream: the Redis stream between publishers and the counters worker, and its one format.
4. count: the counters worker drains the stream into the counters (total, per article, per day,
   online now), one atomic Lua script per batch, and reads them back for the site.
5. persist: the counters' copy in PostgreSQL, and the refill of an emptied Redis from it.

The Lua scripts are the *.lua files beside these modules, loaded with `register_script`.
"""

from __future__ import annotations

ONLINE_WINDOW = 300  # seconds: "online" means seen in the last five minutes

"""Page views, counted exactly once. The modules follow a view's trip: record (the publisher
sees a page answered and names its reader), buffer (the publisher's batches), stream (the Redis
stream and its one format), count (the counters worker's drain, one atomic Lua script a batch,
and the figures the site shows), persist (the copy in PostgreSQL, and the refill of an emptied
Redis). The Lua scripts are the *.lua files beside them, loaded with `register_script`."""

from __future__ import annotations

ONLINE_WINDOW = 300  # seconds: "online" means seen in the last five minutes

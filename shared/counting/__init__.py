"""Page views, counted exactly once. The modules follow a view's trip: record (the publisher
names the reader of a page it answered and sends its views in batches), stream (the Redis
stream and its one format), count (the counters worker's drain, the figures the site shows and
their copy in PostgreSQL). The Lua scripts are the *.lua files beside them."""

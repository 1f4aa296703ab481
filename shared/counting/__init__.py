"""Page views, counted exactly once. The modules follow a view's trip: record (the publisher
names the reader of a page it answered and sends its views in batches; its wiring and the
statistics it shows), stream (the Redis stream and its one format), count (the counters
worker's drain, what pages show and the copy in PostgreSQL). The Lua scripts are beside them."""

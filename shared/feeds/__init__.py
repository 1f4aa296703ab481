"""Feeds, in the order of a feed's trip:

- build.py: a scope's articles read from PostgreSQL and rendered, compressed, validated;
- formats.py: the documents themselves (RSS 2.0, Atom, JSON Feed 1.1);
- stored.py: page 1 of each feed as the publisher holds and answers it.

The rebuilds (coalesced, locked, announced to the WebSub hub) are Celery tasks in
workers/feeds.py; the publisher's handler is services/publisher/feeds.py.
"""

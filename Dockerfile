# syntax=docker/dockerfile:1
# `octopus serve` in a container, on the official SWI-Prolog image (Debian bookworm, with
# SWI-Prolog built from source with `swipl` in /usr/bin, and Debian's Python 3.11).
#
# UNTESTED: no machine this project is built on runs a Docker engine, so CI does not
# build this image (see docs/install.md). Please report what fails.
#
#   docker build -t octopus .
#   docker run --rm -e OCTOPUS_PASSWORD=change-me -p 127.0.0.1:6380:6380 octopus
#   OCTOPUS_PASSWORD=change-me octopus info --url tcp://127.0.0.1:6380
#
# The server listens on 0.0.0.0 inside the container, which octopus allows only with a
# password: without OCTOPUS_PASSWORD it exits at once (status 2) and says so.

ARG SWIPL_VERSION=9.2.9

# --- build: janus-swi compiled against this image's SWI-Prolog; octopus from this tree
FROM swipl:${SWIPL_VERSION} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev python3-dev python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/octopus
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY octopus/ octopus/
COPY prolog/ prolog/
# --no-binary: a prebuilt janus-swi wheel would be linked against some other libswipl;
# building it finds this image's SWI-Prolog through the `swipl` on PATH (/usr/bin/swipl).
RUN /opt/octopus/bin/pip install --no-cache-dir --no-binary janus-swi ".[server]" \
    && /opt/octopus/bin/python -c \
       "import octopus; e = octopus.Engine(); e.set('x { a: 1 }'); e.close()" \
    && /opt/octopus/bin/octopus --version

# --- runtime: the same base and the venv, without the compiler
FROM swipl:${SWIPL_VERSION}
COPY --from=build /opt/octopus /opt/octopus
RUN useradd --system --create-home --home-dir /var/lib/octopus --shell /usr/sbin/nologin \
        octopus \
    && mkdir -p /run/octopus && chown octopus: /run/octopus
# octopus finds SWI-Prolog through the `swipl` on PATH, the one janus-swi was built with.
ENV PATH=/opt/octopus/bin:$PATH \
    LANG=C.UTF-8
USER octopus
WORKDIR /var/lib/octopus
EXPOSE 6380
# `octopus info` exits 0 when the server answers, 3 when it cannot connect; Docker wants 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD octopus info --url tcp://127.0.0.1:6380 >/dev/null || exit 1
ENTRYPOINT ["octopus"]
CMD ["serve", "--host", "0.0.0.0", "--port", "6380", "--allow-remote"]

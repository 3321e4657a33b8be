# A minimal stand-in for the `firehose` package (https://github.com/fedora-static-analysis/firehose),
# which Debian no longer ships, holding only what laniakea-spark's debspawn runner uses: the report
# model it fills and writes as XML, and the gcc log parser it calls (here: it finds no warnings).
# Used by tools/bench/side-by-side.ts to run laniakea-spark from source; never installed.

"""firehose.parsers.gcc.parse_file as laniakea-spark calls it; this stand-in records no gcc warnings."""

from firehose.model import Analysis, Generator, Metadata


def parse_file(data_file, sut=None, gccversion=None, stats=None):
    data_file.read()
    return Analysis(Metadata(Generator('gcc', gccversion), sut, None, stats), [])

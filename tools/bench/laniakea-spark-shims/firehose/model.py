"""The parts of firehose.model laniakea-spark uses: an analysis report written as XML."""

from xml.sax.saxutils import escape, quoteattr


class Stats:
    def __init__(self, wallclocktime):
        self.wallclocktime = wallclocktime


class Generator:
    def __init__(self, name, version=None):
        self.name = name
        self.version = version


class DebianSource:
    def __init__(self, name, version, release=None):
        self.name = name
        self.version = version
        self.release = release


class DebianBinary(DebianSource):
    def __init__(self, name, version, release, buildarch):
        super().__init__(name, version, release)
        self.buildarch = buildarch


class Metadata:
    def __init__(self, generator, sut, file_, stats):
        self.generator = generator
        self.sut = sut
        self.file_ = file_
        self.stats = stats


class Analysis:
    def __init__(self, metadata, results):
        self.metadata = metadata
        self.results = results

    def to_xml_bytes(self):
        generator = self.metadata.generator
        sut = self.metadata.sut
        kind = 'debian-binary' if isinstance(sut, DebianBinary) else 'debian-source'
        text = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<analysis><metadata>'
            '<generator name=%s version=%s/><sut><%s name=%s version=%s/></sut></metadata>'
            '<results>%s</results></analysis>\n'
            % (
                quoteattr(str(generator.name)),
                quoteattr(str(generator.version)),
                kind,
                quoteattr(str(sut.name)),
                quoteattr(str(sut.version)),
                ''.join('<issue>%s</issue>' % escape(str(r)) for r in self.results),
            )
        )
        return text.encode('utf-8')

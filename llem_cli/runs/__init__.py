"""A run on disk: its directory layout, records, journal (writer, reader, replay), resolution, lock.

Everything here works on files and plain data; nothing starts a container. See docs/design.md.
"""

"""The coordinator's I/O around the pure domain: journal, leader loop, replica."""

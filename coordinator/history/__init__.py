"""The job history server: a faust-streaming projection of the journal (``jm history``)."""

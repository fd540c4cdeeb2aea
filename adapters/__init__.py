"""Adapters: everything that talks to the outside world (PostgreSQL, S3/SQS, Orthanc, processes, CLI).

They translate between the outside and the pure ``tmi`` core; ``tmi`` never imports them.
"""

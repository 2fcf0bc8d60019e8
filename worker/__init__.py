"""The TaskManager: slots that run tasks and report to the JobManager.

Never imports ``coordinator``; its only contract with the coordinator is ``schemas``.
"""

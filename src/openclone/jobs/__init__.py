"""Long work (train, distill, eval) as resumable subprocess jobs with progress."""

from openclone.jobs.runner import (
    FINAL_STATES,
    JobStatus,
    cancel_job,
    get_job,
    job_logs,
    jobs_dir,
    list_jobs,
    resume_job,
    start_job,
    wait_job,
)

__all__ = [
    "FINAL_STATES",
    "JobStatus",
    "cancel_job",
    "get_job",
    "job_logs",
    "jobs_dir",
    "list_jobs",
    "resume_job",
    "start_job",
    "wait_job",
]

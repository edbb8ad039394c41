"""The GitHub Action (action.yml at the repository root): runs convai-sync in a
workflow job and talks to GitHub. `python -m convai_sync.action` is its one
step after installing; everything it needs comes from the environment (the
action's inputs as INPUT_*, GitHub's GITHUB_* variables, the caller's account
variables). See README, "Using it in GitHub"."""

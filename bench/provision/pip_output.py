"""What pip's output says when it could not build an environment: a resolution failure is the pair's (the
runtime's pins and the model's requirements do not go together), anything else (the network, a wheel that
failed to build, the disk) is the user's to fix."""

from __future__ import annotations

RESOLUTION_FAILED = ("ResolutionImpossible", "No matching distribution found", "conflicting dependencies")
NETWORK_TROUBLE = ("Retrying (Retry(", "NewConnectionError", "Failed to establish a new connection",
                   "Could not fetch URL", "Read timed out")


def resolution_failure(pip_output: str) -> str | None:
    """pip's reason, in one line, when it could not resolve the requirements; None for any other failure
    (the network, a package that failed to build, the disk), which is the user's to fix, not the pair's."""
    if not any(marker in pip_output for marker in RESOLUTION_FAILED) \
            or any(marker in pip_output for marker in NETWORK_TROUBLE):
        return None
    lines = [line.strip() for line in pip_output.splitlines()]
    for line in lines:
        if line.startswith("ERROR: Cannot install "):
            clash = line.removeprefix("ERROR: ").split(" because ")[0]
            causes = _conflict_causes(lines)
            return f"{clash} ({'; '.join(causes)})" if causes else clash
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR: ")]
    errors = [line for line in errors if not line.startswith("ResolutionImpossible")] or errors
    return errors[-1][:300] if errors else "pip could not resolve the requirements"


def _conflict_causes(lines: list[str]) -> list[str]:
    """pip's 'The conflict is caused by:' block; a package's own dependency, when there is one, says more
    than the requests it clashes with."""
    if "The conflict is caused by:" not in lines:
        return []
    block = []
    for line in lines[lines.index("The conflict is caused by:") + 1:]:
        if not line:
            break
        block.append(line)
    return [line for line in block if not line.startswith("The user requested")] or block

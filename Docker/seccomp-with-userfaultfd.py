#!/usr/bin/env python3
"""Writes a container engine's default seccomp profile with one change:
userfaultfd is allowed when its flags include UFFD_USER_MODE_ONLY, which
is how the registration cache's memory monitor opens it
(docs/containers.md says why that is safe).

    python3 Docker/seccomp-with-userfaultfd.py [BASE_PROFILE] OUT

BASE_PROFILE defaults to podman's (/usr/share/containers/seccomp.json);
Docker publishes its default profile as profiles/seccomp/default.json in
the moby repository. The profile is made from the engine's own rather
than kept here, so that it follows the engine's updates.
"""
import json
import sys

UFFD_USER_MODE_ONLY = 1
ENGINE_DEFAULTS = ["/usr/share/containers/seccomp.json"]


def main(arguments):
    if len(arguments) not in (1, 2):
        sys.exit("usage: seccomp-with-userfaultfd.py [BASE_PROFILE] OUT")
    out = arguments[-1]
    base = arguments[0] if len(arguments) == 2 else None
    if base is None:
        for candidate in ENGINE_DEFAULTS:
            try:
                open(candidate).close()
                base = candidate
                break
            except OSError:
                pass
    if base is None:
        sys.exit("seccomp-with-userfaultfd.py: no default profile found at "
                 + ", ".join(ENGINE_DEFAULTS) + "; name the engine's default profile as the first argument")
    try:
        with open(base) as file:
            profile = json.load(file)
    except (OSError, ValueError) as error:
        sys.exit(f"seccomp-with-userfaultfd.py: cannot read {base} as a seccomp profile: {error}")
    if not isinstance(profile.get("syscalls"), list):
        sys.exit(f"seccomp-with-userfaultfd.py: {base} has no 'syscalls' list; is it a seccomp profile?")

    # Out of every rule that names it (the defaults deny it explicitly), so
    # that the one rule below decides.
    rules = []
    for rule in profile["syscalls"]:
        names = [name for name in rule.get("names", []) if name != "userfaultfd"]
        if rule.get("name") == "userfaultfd":
            continue
        if names or "name" in rule:
            rules.append(dict(rule, names=names) if "names" in rule else rule)
    rules.append({
        "names": ["userfaultfd"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": UFFD_USER_MODE_ONLY, "valueTwo": UFFD_USER_MODE_ONLY,
                  "op": "SCMP_CMP_MASKED_EQ"}],
        "comment": "SwiftFabric's memory monitor: user-mode-only userfaultfd (no kernel-mode faults)",
    })
    profile["syscalls"] = rules
    with open(out, "w") as file:
        json.dump(profile, file, indent=1)
        file.write("\n")
    print(f"{out}: {base} with userfaultfd allowed in user mode only")


if __name__ == "__main__":
    main(sys.argv[1:])

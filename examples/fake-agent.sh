#!/bin/sh
# A stand-in for an AI coding agent, for examples/agents.toml and its test: it reports
# what Claude Code's hooks would (through `worker hook`), edits AGENT-NOTES.md in its
# directory (its worktree under examples/agents.toml), asks a person
# for permission once when started with --ask (answer it with a message:
# `orchestrator send SESSION --to TASK yes`; it gives up after 60 s), and ends its turn.
#   fake-agent.sh [--ask] "PROMPT"
ask=no
if [ "$1" = "--ask" ]; then ask=yes; shift; fi
prompt=$1
task=${MAESTRO_TASK:-agent}
hook() { printf '%s' "$1" | worker hook; }
hook '{"hook_event_name":"SessionStart","source":"startup"}'
hook "{\"hook_event_name\":\"UserPromptSubmit\",\"prompt\":\"$prompt\"}"
hook '{"hook_event_name":"PreToolUse","tool_name":"Edit"}'
echo "fake-agent ($task): editing for: $prompt"
echo "- $task: $prompt" >> AGENT-NOTES.md
hook '{"hook_event_name":"PostToolUse","tool_name":"Edit"}'
if [ "$ask" = yes ]; then
  hook '{"hook_event_name":"Notification","notification_type":"permission_prompt","message":"fake-agent needs your permission to run the tests"}'
  answer=$(worker recv --wait --timeout 60s)
  echo "fake-agent ($task): the answer was: $answer"
  hook '{"hook_event_name":"PreToolUse","tool_name":"Bash"}'
  hook '{"hook_event_name":"PostToolUse","tool_name":"Bash"}'
fi
hook '{"hook_event_name":"Stop"}'
echo "fake-agent: done with: $prompt"

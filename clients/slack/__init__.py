"""The Slack bot: answers mentions and direct messages through the gateway (`docent slack`).

`bot.py` is the Bolt app and its listeners, `reply.py` one streaming answer in a
thread, `messages.py` the text and blocks (pure), `thread.py` a thread's earlier
messages as a conversation's turns, `server.py` the HTTP server (`/healthz`,
`/slack/events`) and Socket Mode. The gateway is asked through `docent.client`.
"""

#!/bin/sh
# Called by a deploy tool when a deploy of the checkout service is aborted (an Argo
# Rollouts notification, a CI step): the flags mapped to monitor "deploy-checkout" in
# engine.monitors are held (paused, never killed) until a person resumes them.
curl -fsS -X POST "$CONTROLLER_URL/webhooks/monitor" \
  -H "Authorization: Bearer $WEBHOOK_TOKEN" -H 'Content-Type: application/json' \
  -d "{\"monitor\": \"deploy-checkout\", \"status\": \"down\", \"action\": \"hold\",
       \"incident_id\": \"$DEPLOY_ID\", \"summary\": \"deploy $DEPLOY_ID aborted\"}"

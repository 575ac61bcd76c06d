"""Run the Route Counter stack on this machine: `./deploy.sh --local`. Never deployed."""

"""Run the Route Counter stack on this machine: no AWS account, no Docker.

`python -m local` (or `./deploy.sh --local`) starts an AWS emulator (moto_server), deploys
the generated template to it through CloudFormation, and serves the template's REST API on
http://127.0.0.1:3000, running each function's inline code in this process.

Nothing here is deployed; nothing deployed imports it.
"""

"""Deploy, inspect or delete the Route Counter stack: the flow behind ./deploy.sh.

Shaped like the AWS CLI's own deployer (awscli/customizations/cloudformation/deployer.py):
find the stack, create a change set, wait for it, describe it, execute it, follow the events,
then the stack policy, the outputs and a smoke test. `./deploy.sh` runs `python -m deployer`;
`./deploy.sh --local` deploys to its emulator through the same `Deployer`.
"""

"""`inspector retrain`: the closed loop from reviews to a shadow model, over the HTTP API.

`client` talks to the server, `data` lays out the reviewed frames and the training folder,
`compare` judges the active and the new model on the held-out frames. Training itself runs
in a child process (`inspector train`), so this package never imports torch.
"""

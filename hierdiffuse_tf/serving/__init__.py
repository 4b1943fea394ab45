"""Serving: TF Serving config parsing, the gRPC `Client`, and the `serve-dev` stand-in server.

`Client` is imported lazily so that `import hierdiffuse_tf.serving` stays light.
"""


def __getattr__(name):
    if name == "Client":
        from hierdiffuse_tf.serving.client import Client

        return Client
    raise AttributeError(name)

"""A small Keras classifier trained on synthetic data: enough to show a real TensorFlow job
running under the runner on CPU. Saves the model into the modeldir artifact."""
import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import keras

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--samples", type=int, default=512)
args = parser.parse_args()

rng = np.random.default_rng(0)
x = rng.normal(size=(args.samples, 16)).astype("float32")
y = (x[:, :4].sum(axis=1) > 0).astype("int32")

model = keras.Sequential([keras.Input(shape=(16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])


class PrintLoss(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        print(f"epoch {epoch + 1}: loss={logs['loss']:.4f} accuracy={logs['accuracy']:.4f}", flush=True)


history = model.fit(x, y, epochs=args.epochs, batch_size=64, verbose=0, callbacks=[PrintLoss()])
mapping = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
model.save(os.path.join(mapping["modeldir"], "model.keras"))
print(f"keras {keras.__version__}: final loss {history.history['loss'][-1]:.4f}; saved modeldir/model.keras")

"""The original Keras tutorial, unchanged but for the data path and fit() for fit_generator(), side by side.

TensorFlow is no dependency of catdog_pl; install it apart, in its own virtual environment. Keras 3 dropped
``ImageDataGenerator``, so this runs on Keras 2 (``tf-keras``), the API the tutorial was written for:

    python -m venv /tmp/keras && /tmp/keras/bin/pip install tensorflow-cpu tf-keras pillow scipy
    /tmp/keras/bin/python benchmarks/keras_original.py --data_dir ../shared/data/cats_vs_dogs

It prints the wall time of the 25 epochs and the last epoch's validation (= test set) accuracy.
"""

import argparse
import time

start = time.perf_counter()
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data_dir", default="dataset")
parser.add_argument("--epochs", type=int, default=25)
args = parser.parse_args()

from tf_keras.layers import Conv2D, Dense, Flatten, MaxPooling2D  # noqa: E402
from tf_keras.models import Sequential  # noqa: E402
from tf_keras.preprocessing.image import ImageDataGenerator  # noqa: E402

classifier = Sequential()
classifier.add(Conv2D(32, (3, 3), input_shape=(64, 64, 3), activation="relu"))
classifier.add(MaxPooling2D(pool_size=(2, 2)))
classifier.add(Conv2D(32, (3, 3), activation="relu"))
classifier.add(MaxPooling2D(pool_size=(2, 2)))
classifier.add(Flatten())
classifier.add(Dense(units=128, activation="relu"))
classifier.add(Dense(units=1, activation="sigmoid"))
classifier.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])

train_datagen = ImageDataGenerator(rescale=1.0 / 255, shear_range=0.2, zoom_range=0.2, horizontal_flip=True)
test_datagen = ImageDataGenerator(rescale=1.0 / 255)
training_set = train_datagen.flow_from_directory(
    f"{args.data_dir}/training_set", target_size=(64, 64), batch_size=32, class_mode="binary"
)
test_set = test_datagen.flow_from_directory(
    f"{args.data_dir}/test_set", target_size=(64, 64), batch_size=32, class_mode="binary"
)
history = classifier.fit(training_set, epochs=args.epochs, validation_data=test_set)
print(
    f"Keras original: {args.epochs} epochs in {time.perf_counter() - start:.1f} s (start-up included), "
    f"last val_accuracy {history.history['val_accuracy'][-1]:.3f}"
)

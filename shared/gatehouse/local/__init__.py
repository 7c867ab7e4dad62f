"""The one-machine stack: the real Pub/Sub and Firestore emulators plus HTTP stand-ins of the Google
APIs that ship no emulator, wired the way production is wired."""

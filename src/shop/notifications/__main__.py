from shop.notifications.app import main

main()

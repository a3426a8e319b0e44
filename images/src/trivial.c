/* The shortest possible program: exit(0) as its first instruction (start-up benchmark). */
void _start(void) {
    __asm__ volatile("mov $60, %eax\n\txor %edi, %edi\n\tsyscall");
}
